"""Diffusion Policy as a policy the rollout loop can run.

As in LeRobot, the loop hands the policy one observation every control step and the policy
keeps the last `obs_steps` of them and a queue of planned actions (`ReplanningPolicy`). When
the queue is empty it denoises a new 16-step sequence and queues its first 8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pi0bench.checkpoint import load_for_env, resolve
from pi0bench.policies.replanning import ReplanningPolicy
from pi0bench.policies.visuomotor import per_task_checkpoint
from pi0bench.policies.dp.recipe import DpRecipe


class DpPolicy(ReplanningPolicy):
    def __init__(self, env, checkpoint: Path, inference_steps: int | None = None):
        self.recipe, self.model, self.normalizer, self.metadata = load_for_env(checkpoint, env, DpRecipe)
        cfg = self.recipe.config
        super().__init__(window=cfg.obs_steps)
        self.inference_steps = int(inference_steps or cfg.inference_steps)
        self.metadata["inference_steps"] = self.inference_steps

    def _plan(self) -> np.ndarray:
        cfg = self.recipe.config
        frames = [list(o["images"].values()) for o in self.history]
        inputs = self.recipe.observation(frames, np.stack([o["state"] for o in self.history]), self.normalizer)
        noise = torch.randn((1, cfg.horizon, cfg.action_dim), generator=self._generator)
        with torch.inference_mode():
            actions = self.model.sample(inputs["images"][None], inputs["state"][None], noise,
                                        self.inference_steps)[0].numpy()
        return self.normalizer.unaction(actions[: cfg.execute]).astype(np.float32)


def make_dp(env, checkpoint: str | Path | None = None, inference_steps: int | None = None) -> DpPolicy:
    """`inference_steps`: DDIM steps a plan takes (default the checkpoint config's, 10)."""
    return DpPolicy(env, resolve(checkpoint, per_task_checkpoint("dp", env), "dp"), inference_steps)
