"""Diffusion Policy as a policy the rollout loop can run.

As in LeRobot, the loop hands the policy one observation every control step and the policy
keeps the last `obs_steps` of them and a queue of planned actions (`ReplanningPolicy`). When
the queue is empty it denoises a new 16-step sequence and queues its first 8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pi0bench.checkpoint import load_for_env
from pi0bench.envs.description import EnvDescription
from pi0bench.policies.base import padded, stack_rows
from pi0bench.policies.device import model_device
from pi0bench.policies.replanning import ReplanningPolicy
from pi0bench.policies.dp.recipe import DpRecipe


class DpPolicy(ReplanningPolicy):
    def __init__(self, description: EnvDescription, checkpoint: Path, inference_steps: int | None = None,
                 device: str = "cpu"):
        self.recipe, self.model, self.normalizer, self.metadata = load_for_env(checkpoint, description, DpRecipe,
                                                                               device)
        cfg = self.recipe.config
        super().__init__(window=cfg.obs_steps)
        self.inference_steps = int(inference_steps or cfg.inference_steps)
        self.metadata["inference_steps"] = self.inference_steps

    @classmethod
    def _plan_batch(cls, policies: list[DpPolicy], rows: int | None) -> list[np.ndarray]:
        first = policies[0]
        cfg = first.recipe.config
        inputs = padded([p._inputs() for p in policies], rows)
        noise = padded([torch.randn((1, cfg.horizon, cfg.action_dim), generator=p._generator) for p in policies], rows)
        device = model_device(first.model)
        with torch.inference_mode():
            actions = first.model.sample(stack_rows([i["images"] for i in inputs]).to(device),
                                         stack_rows([i["state"] for i in inputs]).to(device),
                                         torch.cat(noise).to(device), first.inference_steps).cpu().numpy()
        return [p.normalizer.unaction(a[: cfg.execute]).astype(np.float32) for p, a in zip(policies, actions)]

    def _inputs(self) -> dict:
        frames = [list(o["images"].values()) for o in self.history]
        return self.recipe.observation(frames, np.stack([o["state"] for o in self.history]), self.normalizer)


def make_dp(description: EnvDescription, checkpoint: Path, inference_steps: int | None = None,
            device: str = "cpu") -> DpPolicy:
    """`inference_steps`: DDIM steps a plan takes (default the checkpoint config's, 10).
    `device`: where the model runs (policies/device.py)."""
    return DpPolicy(description, checkpoint, inference_steps, device)
