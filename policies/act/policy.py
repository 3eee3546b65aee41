"""ACT as a policy the rollout loop can run: by default the loop executes each predicted chunk
whole; with temporal ensembling the policy is queried every step and averages every chunk's
prediction for that step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pi0bench.checkpoint import load_for_env, resolve
from pi0bench.policies.visuomotor import per_task_checkpoint
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
    def __init__(self, env, checkpoint: Path, temporal_ensemble: float | None = None):
        self.recipe, self.model, self.normalizer, self.metadata = load_for_env(checkpoint, env, ActRecipe)
        self.ensembler = TemporalEnsembler(float(temporal_ensemble)) if temporal_ensemble else None
        self.execute_steps = 1 if self.ensembler else self.recipe.config.chunk
        self.metadata["temporal_ensemble"] = temporal_ensemble

    def reset(self, task: str, seed: int) -> None:
        if self.ensembler:
            self.ensembler.reset()

    def act(self, obs: dict) -> np.ndarray:
        inputs = self.recipe.observation(list(obs["images"].values()), obs["state"], self.normalizer)
        with torch.inference_mode():
            chunk = self.model.predict(inputs["images"][None], inputs["state"][None])[0].numpy()
        chunk = self.normalizer.unaction(chunk).astype(np.float32)
        return self.ensembler.step(chunk)[None] if self.ensembler else chunk


def make_act(env, checkpoint: str | Path | None = None, temporal_ensemble: float | None = None) -> ActPolicy:
    """`temporal_ensemble`: the coefficient k of exp(−k·i) (ACT uses 0.01); off by default."""
    return ActPolicy(env, resolve(checkpoint, per_task_checkpoint("act", env), "act"), temporal_ensemble)
