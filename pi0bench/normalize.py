"""z-score normalisation of states and actions, per robot, from dataset statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Normalizer:
    """z-scoring of one robot's state and action vectors, and their 1st and 99th percentiles
    for policies that squash values into that range instead (OpenVLA); checkpoints written
    before the percentiles were kept have none."""

    state_mean: np.ndarray
    state_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray
    state_q01: np.ndarray | None = None
    state_q99: np.ndarray | None = None
    action_q01: np.ndarray | None = None
    action_q99: np.ndarray | None = None

    @classmethod
    def from_dict(cls, data: dict) -> Normalizer:
        return cls(**{k: np.asarray(v, np.float32) for k, v in data.items() if v is not None})

    def to_dict(self) -> dict:
        return {k: np.asarray(v).tolist() for k, v in self.__dict__.items() if v is not None}

    def state(self, x: np.ndarray) -> np.ndarray:
        return (x - self.state_mean) / np.maximum(self.state_std, 1e-6)

    def action(self, x: np.ndarray) -> np.ndarray:
        return (x - self.action_mean) / np.maximum(self.action_std, 1e-6)

    def unaction(self, x: np.ndarray) -> np.ndarray:
        return x * np.maximum(self.action_std, 1e-6) + self.action_mean


def merge_stats(stats: list[dict]) -> dict:
    """Combine the stats.json of several datasets of one robot into one Normalizer dict:
    count-weighted means and pooled standard deviations. Percentiles cannot be pooled exactly
    from summaries, so q01/q99 are the widest over the datasets (no task's central 98 % is cut)."""
    out = {}
    for key, prefix in (("observation.state", "state"), ("action", "action")):
        counts = np.array([s[key]["count"][0] for s in stats], np.float64)
        means = np.array([s[key]["mean"] for s in stats])
        stds = np.array([s[key]["std"] for s in stats])
        mean = (counts[:, None] * means).sum(0) / counts.sum()
        second = (counts[:, None] * (stds**2 + means**2)).sum(0) / counts.sum()
        out[f"{prefix}_mean"] = mean.tolist()
        out[f"{prefix}_std"] = np.sqrt(np.maximum(second - mean**2, 0.0)).tolist()
        if all("q01" in s[key] and "q99" in s[key] for s in stats):
            out[f"{prefix}_q01"] = np.min([s[key]["q01"] for s in stats], 0).tolist()
            out[f"{prefix}_q99"] = np.max([s[key]["q99"] for s in stats], 0).tolist()
    return out
