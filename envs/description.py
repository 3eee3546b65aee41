"""What a policy may know about the env it will drive, as one small frozen value.

Policy factories are built from an `EnvDescription` (plus a checkpoint and options), never from
a live env, so a policy process, a server or `compare`'s fit check can build or vet a policy
without a simulator. Both env families expose theirs as ``env.unwrapped.description``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from gymnasium import spaces

from pi0bench.errors import UserError


@dataclass(frozen=True)
class EnvDescription:
    task: str
    robot: str  # checkpoints are keyed by robot name
    action_dim: int
    state_dim: int
    control_hz: float
    cameras: tuple[str, ...]  # the cameras an observation carries, in order
    image_size: tuple[int, int]  # (height, width) of every image
    instruction: str  # the task's default prompt (a language perturbation may reword it)
    stages: tuple[str, ...]  # rubric stages, in order
    max_steps: int  # control steps before truncation
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    still_action: tuple[float, ...] | None = None  # keeps relative-command robots still (robosuite)
    expert: bool = True  # whether the task has a scripted privileged-state expert

    @property
    def action_space(self) -> spaces.Box:
        return spaces.Box(np.asarray(self.action_low, np.float32), np.asarray(self.action_high, np.float32),
                          dtype=np.float32)

    def to_dict(self) -> dict:
        return asdict(self)


def choose_cameras(robot, cameras: tuple[str, ...] | None) -> tuple[str, ...]:
    """The cameras an env shows: the robot's defaults when None. An unknown name is a one-line
    error naming the valid ones, raised before any env or renderer exists."""
    chosen = tuple(robot.default_cameras if cameras is None else cameras)
    unknown = [c for c in chosen if c not in robot.cameras]
    if unknown:
        raise UserError(f"unknown camera {unknown[0]!r} for the {robot.name} robot; "
                        f"choose from {', '.join(robot.cameras)}")
    return chosen


def describe_task(task, cameras: tuple[str, ...] | None, image_size: tuple[int, int]) -> EnvDescription:
    """The description of one of the project's tasks (what TaskEnv exposes), from the task and
    its robot alone: no model is compiled and nothing is rendered. `cameras` as for
    `choose_cameras` (None: the robot's defaults)."""
    robot = task.make_robot()
    cameras = choose_cameras(robot, cameras)
    low, high = robot.action_bounds()
    return EnvDescription(
        task=task.name, robot=robot.name, action_dim=robot.action_dim, state_dim=robot.action_dim,
        control_hz=float(robot.control_hz), cameras=cameras, image_size=tuple(image_size),
        instruction=task.instruction, stages=tuple(s.name for s in task.stages),
        max_steps=round(task.episode_seconds * robot.control_hz),
        action_low=tuple(float(v) for v in low), action_high=tuple(float(v) for v in high))
