"""Robots as the environment sees them: how an action becomes actuator targets and what
the measured state is. A task picks a robot; the env never knows which one it drives."""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from pi0bench.envs import aloha, franka, viperx


@dataclass
class Robot:
    """A robot attached to a scene: action/state layout, cameras and the actuator mapping.

    Actions are absolute joint-position targets plus one gripper opening in [0, 1] per hand.
    """

    name: str
    joint_names: list[str]
    joint_limits: np.ndarray  # [n_joints, 2]
    gripper_joints: list[list[str]]  # per gripper, the finger joints (opening = their mean)
    gripper_stroke: float
    actuator_names: list[str]  # arm actuators then one per gripper, in action order
    arm_slices: list[slice]  # where each arm's joints sit in the action vector
    gripper_indices: list[int]  # where each gripper's opening sits in the action vector
    tcp_sites: list[str]  # one per arm: z = approach direction, y = closing direction
    cameras: tuple[str, ...]  # every camera on the robot or in its station
    default_cameras: tuple[str, ...]  # what a policy sees unless it asks for others
    control_hz: float
    home: np.ndarray  # a full action vector (joints + gripper openings)
    _ids: dict = field(default_factory=dict, repr=False)

    @property
    def action_dim(self) -> int:
        return len(self.home)

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        low = np.zeros(self.action_dim, np.float32)
        high = np.ones(self.action_dim, np.float32)
        joint = 0
        for sl in self.arm_slices:
            n = sl.stop - sl.start
            low[sl] = self.joint_limits[joint:joint + n, 0]
            high[sl] = self.joint_limits[joint:joint + n, 1]
            joint += n
        return low, high

    def bind(self, model: mujoco.MjModel) -> None:
        """Resolve names to ids once per compiled model (the hot path then indexes arrays)."""
        self._ids = {
            "qpos": np.array([model.joint(n).qposadr[0] for n in self.joint_names]),
            "qvel": np.array([model.joint(n).dofadr[0] for n in self.joint_names]),
            "fingers": [np.array([model.joint(n).qposadr[0] for n in g]) for g in self.gripper_joints],
            "actuators": np.array([model.actuator(n).id for n in self.actuator_names]),
            "arm": self.arm_action_indices(),
            "bounds": self.action_bounds(),
        }

    def arm_action_indices(self) -> np.ndarray:
        return np.concatenate([np.arange(sl.start, sl.stop) for sl in self.arm_slices])

    def apply_action(self, data: mujoco.MjData, action: np.ndarray) -> None:
        action = np.clip(action, *self._ids["bounds"])
        arm_idx = self._ids["arm"]
        ctrl = np.empty(len(self.actuator_names))
        ctrl[: len(arm_idx)] = action[arm_idx]
        ctrl[len(arm_idx):] = action[self.gripper_indices] * self.gripper_stroke
        data.ctrl[self._ids["actuators"]] = ctrl

    def state(self, data: mujoco.MjData) -> np.ndarray:
        out = np.empty(self.action_dim, np.float32)
        out[self._ids["arm"]] = data.qpos[self._ids["qpos"]]
        openings = [data.qpos[f].mean() / self.gripper_stroke for f in self._ids["fingers"]]
        out[self.gripper_indices] = np.clip(openings, 0.0, 1.0)
        return out

    def set_state(self, data: mujoco.MjData, action_like: np.ndarray) -> None:
        """Put the robot at rest at a given joint/gripper configuration (used by reset)."""
        action_like = np.asarray(action_like, float)
        data.qpos[self._ids["qpos"]] = action_like[self._ids["arm"]]
        data.qvel[self._ids["qvel"]] = 0.0
        for fingers, i in zip(self._ids["fingers"], self.gripper_indices):
            data.qpos[fingers] = action_like[i] * self.gripper_stroke
        self.apply_action(data, action_like)


def make_franka(prefix: str = "") -> Robot:
    names = franka.names(prefix)
    return Robot(
        name="franka",
        joint_names=names.joints,
        joint_limits=franka.JOINT_LIMITS,
        gripper_joints=[names.fingers],
        gripper_stroke=franka.FINGER_STROKE,
        actuator_names=names.actuators,
        arm_slices=[slice(0, 7)],
        gripper_indices=[7],
        tcp_sites=[names.tcp_site],
        cameras=("base", "wrist"),
        default_cameras=("base", "wrist"),
        control_hz=20.0,
        home=np.append(franka.HOME, 1.0).astype(np.float32),
    )


def make_aloha() -> Robot:
    """Two ViperX-300 arms; action = per arm (waist ... wrist_rotate, gripper), left first,
    as in ALOHA and openpi."""
    return Robot(
        name="aloha",
        joint_names=[j for arm in aloha.ARMS for j in arm.joints],
        joint_limits=np.concatenate([viperx.JOINT_LIMITS, viperx.JOINT_LIMITS]),
        gripper_joints=[arm.fingers for arm in aloha.ARMS],
        gripper_stroke=viperx.FINGER_STROKE,
        actuator_names=[a for arm in aloha.ARMS for a in arm.actuators[:-1]]
                       + [arm.actuators[-1] for arm in aloha.ARMS],
        arm_slices=[slice(0, 6), slice(7, 13)],
        gripper_indices=[6, 13],
        tcp_sites=[arm.tcp_site for arm in aloha.ARMS],
        cameras=aloha.CAMERAS,
        default_cameras=aloha.DEFAULT_CAMERAS,
        control_hz=50.0,
        home=np.concatenate([viperx.HOME, [1.0], viperx.HOME, [1.0]]).astype(np.float32),
    )
