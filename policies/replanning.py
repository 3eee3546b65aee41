"""Policies that are asked every control step and plan a chunk only when the last one is used up.

DP and Octo condition on a window of recent observations, so the loop must hand them every
observation (`execute_steps = 1`) for the window's frames to be consecutive control steps, as
in training. They keep the last `window` observations (the first repeated at an episode's
start, as the training windows do) and a queue of planned actions, and draw their sampling
noise from a generator seeded by the episode, so an episode replays exactly.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch


class ReplanningPolicy:
    execute_steps = 1  # the loop asks every step; `_plan` runs when the queue is empty

    def __init__(self, window: int):
        self.window = window
        self.reset("", 0)

    def reset(self, task: str, seed: int) -> None:
        """A new episode: empty window and queue, and sampling noise seeded by the episode."""
        self.history: deque[dict] = deque(maxlen=self.window)
        self.queue: deque[np.ndarray] = deque()
        self._generator = torch.Generator().manual_seed(int(seed))

    def act(self, obs: dict) -> np.ndarray:
        return self.act_batch([self], [obs])[0]

    @classmethod
    def act_batch(cls, policies: list, observations: list[dict], rows: int | None = None) -> list[np.ndarray]:
        """Every policy takes its observation; those whose queue is empty plan together in one
        batched pass (base.act_batch); each then executes the head of its queue."""
        for policy, obs in zip(policies, observations):
            if not policy.history:
                policy.history.extend([obs] * policy.window)
            else:
                policy.history.append(obs)
        planning = [p for p in policies if not p.queue]
        if planning:
            for policy, plan in zip(planning, cls._plan_batch(planning, rows)):
                policy.queue.extend(plan)
        return [p.queue.popleft()[None] for p in policies]

    def plan(self, observations: list[dict]) -> np.ndarray:
        """One plan [n, D] from the last `window` of these consecutive observations (oldest
        first), as the loop would execute it: the open-loop diagnostics (chunk_error.py) compare
        it with the recorded actions. The queue is left empty."""
        self.history = deque(observations[-self.window:], maxlen=self.window)
        self.queue.clear()
        return np.asarray(self._plan_batch([self], None)[0], np.float32)

    @classmethod
    def _plan_batch(cls, policies: list, rows: int | None) -> list[np.ndarray]:
        """The next actions [n, D] of each policy, from its `history`, in one forward pass of
        `rows` rows (base.act_batch)."""
        raise NotImplementedError
