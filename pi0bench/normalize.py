"""z-score normalisation of states and actions, per robot, from dataset statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Normalizer:
    """z-scoring of one robot's state and action vectors."""

    state_mean: np.ndarray
    state_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray

    @classmethod
    def from_dict(cls, data: dict) -> Normalizer:
        return cls(**{k: np.asarray(v, np.float32) for k, v in data.items()})

    def to_dict(self) -> dict:
        return {k: np.asarray(v).tolist() for k, v in self.__dict__.items()}

    def state(self, x: np.ndarray) -> np.ndarray:
        return (x - self.state_mean) / np.maximum(self.state_std, 1e-6)

    def action(self, x: np.ndarray) -> np.ndarray:
        return (x - self.action_mean) / np.maximum(self.action_std, 1e-6)

    def unaction(self, x: np.ndarray) -> np.ndarray:
        return x * np.maximum(self.action_std, 1e-6) + self.action_mean


def merge_stats(stats: list[dict]) -> dict:
    """Combine the stats.json of several datasets of one robot into one Normalizer dict:
    count-weighted means and pooled standard deviations."""
    out = {}
    for key, prefix in (("observation.state", "state"), ("action", "action")):
        counts = np.array([s[key]["count"][0] for s in stats], np.float64)
        means = np.array([s[key]["mean"] for s in stats])
        stds = np.array([s[key]["std"] for s in stats])
        mean = (counts[:, None] * means).sum(0) / counts.sum()
        second = (counts[:, None] * (stds**2 + means**2)).sum(0) / counts.sum()
        out[f"{prefix}_mean"] = mean.tolist()
        out[f"{prefix}_std"] = np.sqrt(np.maximum(second - mean**2, 0.0)).tolist()
    return out
