"""Reference policies that need no training: `random` and `hold` (the floor every learned
policy must beat; neither can succeed at any task)."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from pi0bench.envs.description import EnvDescription


class RandomPolicy:
    """Uniform samples from the action space, seeded per episode (so runs are reproducible)."""

    execute_steps = None

    def __init__(self, action_space: spaces.Box, chunk: int = 10):
        self.space = action_space
        self.chunk = chunk
        self.metadata = {"name": "random", "version": "1", "checkpoint": ""}
        self._rng = np.random.default_rng(0)

    def reset(self, task: str, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, obs: dict) -> np.ndarray:
        low, high = self.space.low, self.space.high
        return self._rng.uniform(low, high, size=(self.chunk, len(low))).astype(np.float32)


class HoldPolicy:
    """Keeps the pose the episode started in: sends the first state back as the target, or,
    for robots driven by relative commands (robosuite's controllers), the `still` action."""

    execute_steps = None

    def __init__(self, chunk: int = 20, still: np.ndarray | None = None):
        self.chunk = chunk
        self.still = still
        self.metadata = {"name": "hold", "version": "1", "checkpoint": ""}
        self._initial: np.ndarray | None = None

    def reset(self, task: str, seed: int) -> None:
        self._initial = None

    def act(self, obs: dict) -> np.ndarray:
        if self._initial is None:
            start = obs["state"] if self.still is None else self.still
            self._initial = np.asarray(start, np.float32).copy()
        return np.repeat(self._initial[None], self.chunk, axis=0)


def make_random(description: EnvDescription) -> RandomPolicy:
    return RandomPolicy(description.action_space)


def make_hold(description: EnvDescription) -> HoldPolicy:
    still = None if description.still_action is None else np.asarray(description.still_action, np.float32)
    return HoldPolicy(still=still)
