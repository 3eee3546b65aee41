"""OpenVLA's action discretisation, and the [q01, q99] squashing it shares with OFT.

Each action dimension is mapped linearly from the dataset's [q01, q99] onto [-1, 1] and
clipped there, then cut into 256 bins of equal width. Bin b becomes token
`vocab_size - 1 - b`, so the bins occupy the last 256 ids of the vocabulary (the lowest bin
is the last id, as in the release). A token decodes to its bin's centre, so a value inside
[q01, q99] comes back within half a bin, (q99 - q01) / 512.

The released tokenizer places 256 bin *edges* on [-1, 1] (255 intervals, the top edge folded
into the last one); this follows the paper's description, 256 bins.
"""

from __future__ import annotations

import numpy as np

SPAN_FLOOR = 1e-6  # a dimension that never moves (q01 == q99) still maps to one bin


def to_unit(x: np.ndarray, q01: np.ndarray, q99: np.ndarray) -> np.ndarray:
    """[q01, q99] -> [-1, 1], clipped (OFT's BOUNDS_Q99 normalisation)."""
    span = np.maximum(q99 - q01, SPAN_FLOOR)
    return np.clip(2.0 * (x - q01) / span - 1.0, -1.0, 1.0).astype(np.float32)


def from_unit(u: np.ndarray, q01: np.ndarray, q99: np.ndarray) -> np.ndarray:
    span = np.maximum(q99 - q01, SPAN_FLOOR)
    return (0.5 * (u + 1.0) * span + q01).astype(np.float32)


class ActionTokenizer:
    """Actions [..., D] <-> token ids [..., D] for one robot's percentiles."""

    def __init__(self, q01: np.ndarray, q99: np.ndarray, vocab_size: int, bins: int = 256):
        self.q01, self.q99 = np.asarray(q01, np.float32), np.asarray(q99, np.float32)
        self.vocab_size, self.bins = vocab_size, bins

    def to_bins(self, actions: np.ndarray) -> np.ndarray:
        unit = to_unit(np.asarray(actions, np.float32), self.q01, self.q99)
        return np.clip(np.floor((unit + 1.0) / 2.0 * self.bins), 0, self.bins - 1).astype(np.int64)

    def encode(self, actions: np.ndarray) -> np.ndarray:
        return self.vocab_size - 1 - self.to_bins(actions)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        bins = self.vocab_size - 1 - np.asarray(tokens, np.int64)
        if bins.min(initial=0) < 0 or bins.max(initial=0) >= self.bins:
            raise ValueError(f"token ids outside the last {self.bins} of a {self.vocab_size}-id vocabulary")
        centres = (bins + 0.5) / self.bins * 2.0 - 1.0
        return from_unit(centres, self.q01, self.q99)
