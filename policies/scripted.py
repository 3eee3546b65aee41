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

from pi0bench.envs.ik import SiteIK, grasp_quat


@dataclass(frozen=True)
class Waypoint:
    pos: np.ndarray  # tool centre point target, world frame
    yaw: float  # closing direction of the fingers
    gripper: float  # opening in [0, 1], commanded for the whole segment
    seconds: float  # time to get there
    tilt: float = 0.0  # approach axis lean from vertical, away from the arm (see grasp_quat)
    # A vertical hand may turn half a turn instead (parallel jaws are symmetric); False when
    # the plan will later tilt the hand and needs the yaw exactly as given.
    symmetric: bool = True


# A plan yields one Waypoint per step for a one-armed robot, or a tuple with one per arm
# (in the robot's arm order) that all arms reach together; None in the tuple keeps that arm
# where it is.
Plan = Callable[[], Iterator["Waypoint | tuple[Waypoint, ...]"]]


class _Arm:
    """One arm's side of the expert: its IK, where its numbers sit in the action vector, and
    the pose it was last sent to."""

    def __init__(self, env, tcp_site: str, joints: list[str], action_slice: slice, gripper_index: int):
        model = env.model
        self.ik = SiteIK(model, tcp_site, joints)
        self.tcp = model.site(tcp_site).id
        self.qpos_adr = np.array([model.joint(j).qposadr[0] for j in joints])
        self.action_slice = action_slice
        self.gripper_index = gripper_index

    def start(self, data, gripper: float) -> None:
        self.pos = data.site_xpos[self.tcp].copy()
        hand = data.site_xmat[self.tcp].reshape(3, 3)
        self.yaw = float(np.arctan2(hand[1, 1], hand[0, 1]))
        self.reference_yaw = self.yaw
        self.tilt = float(np.arccos(np.clip(-hand[2, 2], -1.0, 1.0)))
        self.gripper = gripper
        self.joints = data.qpos[self.qpos_adr].copy()

    def path(self, qpos: np.ndarray, waypoint: Waypoint | None, steps: int) -> list[np.ndarray]:
        """Joint targets along a straight TCP line to `waypoint`, one per control step
        (`None`: stay where the last waypoint left the arm)."""
        if waypoint is None:
            return [self.joints] * steps
        if waypoint.tilt == 0.0 and waypoint.symmetric:
            # Parallel fingers are symmetric: of the two equivalent yaws of a vertical hand,
            # take the one nearest the starting wrist angle, keeping the last joint in range.
            target_yaw = self.reference_yaw + _wrap(waypoint.yaw - self.reference_yaw, np.pi)
        else:
            target_yaw = self.yaw + _wrap(waypoint.yaw - self.yaw, 2 * np.pi)
        yaw_delta, tilt_delta = target_yaw - self.yaw, waypoint.tilt - self.tilt
        out = []
        for k in range(1, steps + 1):
            frac = _smoothstep(k / steps)
            pos = self.pos + frac * (waypoint.pos - self.pos)
            quat = grasp_quat(self.yaw + frac * yaw_delta, self.tilt + frac * tilt_delta)
            qpos[self.qpos_adr] = self.joints
            self.joints = self.ik.solve(qpos, pos, quat)
            out.append(self.joints)
        self.pos, self.yaw, self.tilt = np.asarray(waypoint.pos, float), target_yaw, waypoint.tilt
        self.gripper = waypoint.gripper
        return out


class WaypointExpert:
    """Follows a plan with every arm of the robot; holds the last pose once it is exhausted."""

    execute_steps = 1

    def __init__(self, env, plan: Plan, name: str = "scripted"):
        self.env = env
        self.plan = plan
        self.metadata = {"name": name, "version": "1", "checkpoint": ""}
        robot = env.robot
        joints = iter(robot.joint_names)
        self._arms = [
            _Arm(env, site, [next(joints) for _ in range(sl.stop - sl.start)], sl, gi)
            for site, sl, gi in zip(robot.tcp_sites, robot.arm_slices, robot.gripper_indices)
        ]

    def reset(self, task: str, seed: int) -> None:
        self._waypoints = None
        self._queue: list[np.ndarray] = []

    def _start(self) -> None:
        state = self.env.robot.state(self.env.data)
        for arm in self._arms:
            arm.start(self.env.data, float(state[arm.gripper_index]))
        self._waypoints = self.plan()

    def _expand(self, step: Waypoint | tuple[Waypoint, ...]) -> None:
        waypoints = (step,) if isinstance(step, Waypoint) else step
        if len(waypoints) != len(self._arms):
            raise ValueError(f"plan step has {len(waypoints)} waypoints for {len(self._arms)} arms")
        steps = max(1, round(max(w.seconds for w in waypoints if w) * self.env.robot.control_hz))
        qpos = self.env.data.qpos.copy()
        paths = [arm.path(qpos, w, steps) for arm, w in zip(self._arms, waypoints)]
        for k in range(steps):
            self._queue.append(self._action([p[k] for p in paths]))

    def act(self, obs: dict) -> np.ndarray:
        if self._waypoints is None:
            self._start()
        while not self._queue:
            step = next(self._waypoints, None)
            if step is None:
                self._queue.append(self._action([arm.joints for arm in self._arms]))
                break
            self._expand(step)
        return self._queue.pop(0)[None]

    def _action(self, joints: list[np.ndarray]) -> np.ndarray:
        action = np.empty(self.env.robot.action_dim, np.float32)
        for arm, q in zip(self._arms, joints):
            action[arm.action_slice] = q
            action[arm.gripper_index] = arm.gripper
        return action


def _wrap(angle: float, period: float) -> float:
    """The angle equivalent modulo `period` that lies in [-period/2, period/2)."""
    return (angle + period / 2) % period - period / 2


def _smoothstep(x: float) -> float:
    """Zero velocity at both ends of a segment (less overshoot than linear interpolation)."""
    return x * x * (3.0 - 2.0 * x)


def make_scripted(env):
    return env.task.expert(env)
