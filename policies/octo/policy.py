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

from pi0bench.checkpoint import load_for_env
from pi0bench.envs.description import EnvDescription
from pi0bench.policies.base import padded
from pi0bench.policies.device import model_device, to_device
from pi0bench.errors import UserError
from pi0bench.policies.replanning import ReplanningPolicy
from pi0bench.policies.octo.recipe import OctoRecipe



class OctoPolicy(ReplanningPolicy):
    def __init__(self, description: EnvDescription, checkpoint: Path, device: str = "cpu"):
        self.recipe, self.model, self.normalizer, self.metadata = load_for_env(checkpoint, description, OctoRecipe,
                                                                               device)
        cfg = self.recipe.config
        if len(description.cameras) > len(cfg.image_sizes):
            raise UserError(f"{cfg.name} reads at most {len(cfg.image_sizes)} cameras, the env gives "
                            f"{len(description.cameras)}; choose fewer with --cameras")
        super().__init__(window=cfg.window)
        self.action_dim = description.action_dim
        self.action_mask = torch.zeros(1, cfg.action_dim, dtype=torch.bool)
        self.action_mask[:, : self.action_dim] = True

    @classmethod
    def _plan_batch(cls, policies: list[OctoPolicy], rows: int | None) -> list[np.ndarray]:
        """One batched sample; every row's noise, initial and per step, comes from its own
        policy's generator (a list of generators, as diffusers' schedulers take); padding rows
        draw from throwaway ones."""
        first = policies[0]
        cfg = first.recipe.config
        noise = torch.cat(padded([torch.randn((1, cfg.horizon, cfg.action_dim), generator=p._generator)
                                  for p in policies], rows))
        generators = [p._generator for p in policies]
        generators += [torch.Generator().manual_seed(0) for _ in range(len(noise) - len(generators))]
        device = model_device(first.model)
        batch = to_device(first.recipe.batch(padded([p._inputs() for p in policies], rows)), device)
        with torch.inference_mode():
            chunks = first.model.sample(batch, noise.to(device), first.action_mask.expand(len(noise), -1).to(device),
                                        generators[0] if len(generators) == 1 else generators).cpu()
        return [p.normalizer.unaction(c.numpy()[:, : p.action_dim]).astype(np.float32) for p, c in zip(policies, chunks)]

    def _inputs(self) -> dict:
        names = list(self.history[-1]["images"])
        cameras = [np.stack([o["images"][name] for o in self.history]) for name in names]
        states = np.stack([o["state"] for o in self.history])
        return self.recipe.observation(cameras, states, self.history[-1]["prompt"], self.normalizer)


def make_octo(description: EnvDescription, checkpoint: Path, device: str = "cpu") -> OctoPolicy:
    """`device`: where the model runs (policies/device.py)."""
    return OctoPolicy(description, checkpoint, device)
