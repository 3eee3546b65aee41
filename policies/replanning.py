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
        self.history: deque[dict] = deque(maxlen=window)
        self.queue: deque[np.ndarray] = deque()
        self._generator = torch.Generator().manual_seed(0)

    def reset(self, task: str, seed: int) -> None:
        """A new episode: empty window and queue, and sampling noise seeded by the episode."""
        self.history.clear()
        self.queue.clear()
        self._generator = torch.Generator().manual_seed(int(seed))

    def act(self, obs: dict) -> np.ndarray:
        if not self.history:
            self.history.extend([obs] * self.history.maxlen)
        else:
            self.history.append(obs)
        if not self.queue:
            self.queue.extend(self._plan())
        return self.queue.popleft()[None]

    def _plan(self) -> np.ndarray:
        """The next actions [n, D] from `self.history`."""
        raise NotImplementedError
