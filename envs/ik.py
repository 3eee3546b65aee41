"""Inverse kinematics for scripted experts, on dm_control's damped least-squares solver."""

from __future__ import annotations

import mujoco
import numpy as np
from dm_control import mujoco as dm_mujoco
from dm_control.utils import inverse_kinematics


def top_down_quat(closing_yaw: float) -> np.ndarray:
    """Orientation of a hand pointing straight down whose fingers close along the horizontal
    direction at angle `closing_yaw` (hand z = world -z, hand y = closing direction)."""
    y = np.array([np.cos(closing_yaw), np.sin(closing_yaw), 0.0])
    z = np.array([0.0, 0.0, -1.0])
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
