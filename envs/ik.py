"""Inverse kinematics for scripted experts, on dm_control's damped least-squares solver."""

from __future__ import annotations

import mujoco
import numpy as np
from dm_control import mujoco as dm_mujoco
from dm_control.utils import inverse_kinematics


def grasp_quat(closing_yaw: float, tilt: float = 0.0) -> np.ndarray:
    """Orientation of a hand whose fingers close along the horizontal direction at angle
    `closing_yaw` (hand y) and whose approach axis (hand z) points down, leaning `tilt`
    radians from vertical towards yaw − 90° — for a hand reaching out from its base with
    the fingers closing across its path, that is away from the base, which extends reach."""
    y = np.array([np.cos(closing_yaw), np.sin(closing_yaw), 0.0])
    lean = closing_yaw - np.pi / 2
    z = np.array([np.sin(tilt) * np.cos(lean), np.sin(tilt) * np.sin(lean), -np.cos(tilt)])
    x = np.cross(y, z)
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.column_stack([x, y, z]).ravel())
    return quat


class SiteIK:
    """Solves joint positions that put a site at a pose, warm-started from the last answer so
    consecutive targets along a path give a smooth joint trajectory."""

    def __init__(self, model: mujoco.MjModel, site: str, joints: list[str]):
        self.physics = dm_mujoco.Physics.from_model(dm_mujoco.wrapper.MjModel(model))
        self.site = site
        self.joints = joints
        self._qpos_adr = np.array([model.joint(j).qposadr[0] for j in joints])

    def solve(self, qpos_seed: np.ndarray, pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
        self.physics.data.qpos[:] = qpos_seed
        result = inverse_kinematics.qpos_from_site_pose(
            self.physics, self.site, target_pos=pos, target_quat=quat, joint_names=self.joints,
            tol=1e-6, max_steps=60, inplace=True,
        )
        return result.qpos[self._qpos_adr].copy()
