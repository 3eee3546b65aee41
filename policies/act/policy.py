"""ACT as a policy the rollout loop can run: by default the loop executes each predicted chunk
whole; with temporal ensembling the policy is queried every step and averages every chunk's
prediction for that step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pi0bench.checkpoint import load_for_env
from pi0bench.envs.description import EnvDescription
from pi0bench.policies.base import padded, stack_rows
from pi0bench.policies.device import model_device
from pi0bench.policies.act.recipe import ActRecipe


class TemporalEnsembler:
    """ACT's temporal ensemble: the action for step t averages the predictions for t of every
    chunk still covering t, with weight exp(−k·i) where i = 0 is the oldest chunk (older
    predictions count more, so the motion stays smooth)."""

    def __init__(self, coefficient: float = 0.01):
        self.coefficient = coefficient
        self.reset()

    def reset(self) -> None:
        self.t = 0
        self.chunks: list[tuple[int, np.ndarray]] = []  # (step it was predicted at, chunk)

    def weights(self, n: int) -> np.ndarray:
        w = np.exp(-self.coefficient * np.arange(n))
        return w / w.sum()

    def step(self, chunk: np.ndarray) -> np.ndarray:
        """Add the chunk predicted at the current step; return the action to execute now."""
        self.chunks.append((self.t, chunk))
        self.chunks = [(start, c) for start, c in self.chunks if self.t - start < len(c)]
        predictions = np.stack([c[self.t - start] for start, c in self.chunks])  # oldest first
        self.t += 1
        return (self.weights(len(predictions))[:, None] * predictions).sum(0)


class ActPolicy:
    def __init__(self, description: EnvDescription, checkpoint: Path, temporal_ensemble: float | None = None,
                 device: str = "cpu"):
        self.recipe, self.model, self.normalizer, self.metadata = load_for_env(checkpoint, description, ActRecipe,
                                                                               device)
        self.temporal_ensemble = float(temporal_ensemble) if temporal_ensemble else None
        self.reset("", 0)
        self.execute_steps = 1 if self.ensembler else self.recipe.config.chunk
        self.metadata["temporal_ensemble"] = temporal_ensemble

    def reset(self, task: str, seed: int) -> None:
        self.ensembler = TemporalEnsembler(self.temporal_ensemble) if self.temporal_ensemble else None

    def act(self, obs: dict) -> np.ndarray:
        return self.act_batch([self], [obs])[0]

    @classmethod
    def act_batch(cls, policies: list[ActPolicy], observations: list[dict], rows: int | None = None) -> list[np.ndarray]:
        """One forward pass for the observations of several siblings (base.act_batch)."""
        inputs = padded([p.recipe.observation(list(o["images"].values()), o["state"], p.normalizer)
                         for p, o in zip(policies, observations)], rows)
        model = policies[0].model
        device = model_device(model)
        with torch.inference_mode():
            chunks = model.predict(stack_rows([i["images"] for i in inputs]).to(device),
                                   stack_rows([i["state"] for i in inputs]).to(device)).cpu().numpy()
        return [p._finish(chunk) for p, chunk in zip(policies, chunks)]

    def _finish(self, chunk: np.ndarray) -> np.ndarray:
        chunk = self.normalizer.unaction(chunk).astype(np.float32)
        return self.ensembler.step(chunk)[None] if self.ensembler else chunk


def make_act(description: EnvDescription, checkpoint: Path, temporal_ensemble: float | None = None,
             device: str = "cpu") -> ActPolicy:
    """`temporal_ensemble`: the coefficient k of exp(−k·i) (ACT uses 0.01); off by default.
    `device`: where the model runs (policies/device.py)."""
    return ActPolicy(description, checkpoint, temporal_ensemble, device)
