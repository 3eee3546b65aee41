"""Octo as a policy the rollout loop can run.

The loop hands the policy one observation every control step; it keeps the last two and a
queue of planned actions (`ReplanningPolicy`), and when the queue is empty samples a 4-step
chunk from the two-frame window and queues all of it. Asking every step, rather than letting
the loop execute the chunk, keeps the window's frames consecutive control steps, as in
training and in Octo's own history wrapper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pi0bench.checkpoint import load_for_env, resolve
from pi0bench.errors import UserError
from pi0bench.policies.replanning import ReplanningPolicy
from pi0bench.policies.octo.recipe import OctoRecipe



class OctoPolicy(ReplanningPolicy):
    def __init__(self, env, checkpoint: Path):
        self.recipe, self.model, self.normalizer, self.metadata = load_for_env(checkpoint, env, OctoRecipe)
        cfg = self.recipe.config
        if len(env.cameras) > len(cfg.image_sizes):
            raise UserError(f"{cfg.name} reads at most {len(cfg.image_sizes)} cameras, the env gives "
                            f"{len(env.cameras)}; choose fewer with --cameras")
        super().__init__(window=cfg.window)
        self.action_dim = env.robot.action_dim
        self.action_mask = torch.zeros(1, cfg.action_dim, dtype=torch.bool)
        self.action_mask[:, : self.action_dim] = True

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
    return OctoPolicy(env, resolve(checkpoint, "octo-tiny", "octo"))
