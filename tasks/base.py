"""What every task provides: a scene, an initial-state sampler, a staged rubric and an expert.

A task is read top to bottom in one module (dm_control's habit): the model it builds, how an
episode starts, the points rubric the paper scored, and a scripted privileged-state expert.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import mujoco
import numpy as np

if TYPE_CHECKING:
    from pi0bench.envs.robots import Robot
    from pi0bench.envs.task_env import TaskEnv
    from pi0bench.policies.base import Policy


@dataclass(frozen=True)
class Stage:
    """One rubric line: `name` earns `points` when the task's predicate for it holds."""

    name: str
    points: float = 1.0


class Task(ABC):
    """A manipulation task. Subclasses set the class attributes and implement the methods."""

    name: str
    instruction: str
    episode_seconds: float
    stages: tuple[Stage, ...]
    # Table areas (x0, x1, y0, y1) outside the workspace, where robustness runs may put distractors.
    clutter_regions: tuple[tuple[float, float, float, float], ...] = ()
    # How much wider than the defaults every initial-state range is (robustness's init axis).
    init_spread: float = 1.0

    def uniform(self, rng: np.random.Generator, low: float, high: float, size=None):
        """A draw from [low, high] widened about its centre by `init_spread`: every random
        initial-state range of a task goes through here (at 1, exactly rng.uniform(low, high))."""
        if self.init_spread == 1.0:
            return rng.uniform(low, high, size=size)
        centre, half = (low + high) / 2, (high - low) / 2 * self.init_spread
        return rng.uniform(centre - half, centre + half, size=size)

    @property
    def max_points(self) -> float:
        return float(sum(s.points for s in self.stages))

    @abstractmethod
    def make_robot(self) -> Robot:
        """The robot this task is played with."""

    @abstractmethod
    def build_spec(self) -> mujoco.MjSpec:
        """The whole scene, robot attached, as an uncompiled spec."""

    @abstractmethod
    def reset(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator) -> None:
        """Randomise the initial state from `rng` (data is already at the model's defaults)."""

    @abstractmethod
    def evaluate(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, bool]:
        """Which rubric stages hold now; called once per control step."""

    @abstractmethod
    def expert(self, env: TaskEnv) -> Policy:
        """A scripted policy that reads the privileged simulator state of `env`."""

    def before_physics(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        """Runs once per control step after the action is applied, before the physics (e.g.
        a cloth grasp engaging when a jaw has closed). Most tasks need nothing here."""

    def new_episode(self) -> None:
        """Clear per-episode memory (e.g. latched stages); called by the env on reset."""
