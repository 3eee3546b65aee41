"""Scripted experts: privileged-state waypoint followers driven by inverse kinematics.

A task's expert is a *plan*: a generator of `Waypoint`s that reads the simulator lazily, so
each phase is planned from where things really are when it starts (an item nudged earlier is
still found). Between waypoints the tool centre point moves in a straight line, and every
control step is converted to joint targets by damped least-squares IK, warm-started from the
previous solution. The expert only ever sends joint and gripper targets, like any policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from pi0bench.envs.ik import SiteIK, top_down_quat


@dataclass(frozen=True)
class Waypoint:
    pos: np.ndarray  # tool centre point target, world frame
    yaw: float  # closing direction of the fingers (top-down grasps)
    gripper: float  # opening in [0, 1], commanded for the whole segment
    seconds: float  # time to get there


Plan = Callable[[], Iterator[Waypoint]]


class WaypointExpert:
    """Follows a plan; holds the last pose once the plan is exhausted."""

    execute_steps = 1

    def __init__(self, env, plan: Plan, tcp_site: str, name: str = "scripted"):
        self.env = env
        self.plan = plan
        self.metadata = {"name": name, "version": "1", "checkpoint": ""}
        self._ik = SiteIK(env.model, tcp_site, env.robot.joint_names)
        self._tcp = env.model.site(tcp_site).id
        self._arm = env.robot.arm_action_indices()
        self._ik_qpos = np.array([env.model.joint(j).qposadr[0] for j in env.robot.joint_names])

    def reset(self, task: str, seed: int) -> None:
        self._waypoints = None
        self._queue: list[np.ndarray] = []

    def _start(self) -> None:
        data = self.env.data
        self._waypoints = self.plan()
        self._pos = data.site_xpos[self._tcp].copy()
        hand_y = data.site_xmat[self._tcp].reshape(3, 3)[:, 1]
        self._yaw = float(np.arctan2(hand_y[1], hand_y[0]))
        self._reference_yaw = self._yaw
        self._gripper = float(self.env.robot.state(data)[-1])
        self._qpos = data.qpos.copy()

    def _expand(self, waypoint: Waypoint) -> None:
        steps = max(1, round(waypoint.seconds * self.env.robot.control_hz))
        # Parallel fingers are symmetric: of the two equivalent yaws, take the one nearest the
        # starting wrist angle, which keeps the last joint well inside its limits.
        target_yaw = self._reference_yaw + _wrap_half_turn(waypoint.yaw - self._reference_yaw)
        yaw_delta = target_yaw - self._yaw
        for k in range(1, steps + 1):
            frac = _smoothstep(k / steps)
            pos = self._pos + frac * (waypoint.pos - self._pos)
            yaw = self._yaw + frac * yaw_delta
            joints = self._ik.solve(self._qpos, pos, top_down_quat(yaw))
            self._qpos[self._ik_qpos] = joints
            self._queue.append(self._action(joints, waypoint.gripper))
        self._pos, self._yaw = np.asarray(waypoint.pos, float), self._yaw + yaw_delta
        self._gripper = waypoint.gripper

    def act(self, obs: dict) -> np.ndarray:
        if self._waypoints is None:
            self._start()
        while not self._queue:
            waypoint = next(self._waypoints, None)
            if waypoint is None:
                self._queue.append(self._hold())
                break
            self._expand(waypoint)
        return self._queue.pop(0)[None]

    def _hold(self) -> np.ndarray:
        return self._action(self._qpos[self._ik_qpos], self._gripper)

    def _action(self, joints: np.ndarray, gripper: float) -> np.ndarray:
        action = np.empty(self.env.robot.action_dim, np.float32)
        action[self._arm] = joints
        action[self.env.robot.gripper_indices] = gripper
        return action


def _wrap_half_turn(angle: float) -> float:
    """The angle equivalent modulo pi that lies in [-pi/2, pi/2)."""
    return (angle + np.pi / 2) % np.pi - np.pi / 2


def _smoothstep(x: float) -> float:
    """Zero velocity at both ends of a segment (less overshoot than linear interpolation)."""
    return x * x * (3.0 - 2.0 * x)


def make_scripted(env):
    return env.task.expert(env)
