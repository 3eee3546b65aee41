"""Octo as a policy the rollout loop can run.

The loop hands the policy one observation every control step. The policy keeps the last two
(the first repeated at an episode's start, as the training windows do) and a queue of planned
actions; when the queue is empty it samples a 4-step chunk from the two-frame window and
queues all of it. Asking every step, rather than letting the loop execute the chunk, is what
keeps the window's frames consecutive control steps, as in training and in Octo's own
history wrapper."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import torch

from pi0bench.checkpoint import load_for_env, require
from pi0bench.errors import UserError

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "results" / "checkpoints" / "octo-tiny"


class OctoPolicy:
    execute_steps = 1  # the loop asks every step; the policy plans every `horizon` steps

    def __init__(self, env, checkpoint: Path):
        self.recipe, self.model, self.normalizer, self.metadata = load_for_env(checkpoint, env, "octo")
        cfg = self.recipe.config
        if len(env.cameras) > len(cfg.image_sizes):
            raise UserError(f"{cfg.name} reads at most {len(cfg.image_sizes)} cameras, the env gives "
                            f"{len(env.cameras)}; choose fewer with --cameras")
        self.action_dim = env.robot.action_dim
        self.action_mask = torch.zeros(1, cfg.action_dim, dtype=torch.bool)
        self.action_mask[:, : self.action_dim] = True
        self.history: deque[dict] = deque(maxlen=cfg.window)
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
        cfg = self.recipe.config
        names = list(self.history[-1]["images"])
        cameras = [np.stack([o["images"][name] for o in self.history]) for name in names]
        states = np.stack([o["state"] for o in self.history])
        inputs = self.recipe.observation(cameras, states, self.history[-1]["prompt"], self.normalizer)
        noise = torch.randn((1, cfg.horizon, cfg.action_dim), generator=self._generator)
        with torch.inference_mode():
            chunk = self.model.sample(self.recipe.batch([inputs]), noise, self.action_mask, self._generator)[0]
        return self.normalizer.unaction(chunk.numpy()[:, : self.action_dim]).astype(np.float32)


def make_octo(env, checkpoint: str | Path | None = None) -> OctoPolicy:
    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    require(path, "octo")
    return OctoPolicy(env, path)
