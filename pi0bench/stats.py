"""Intervals and per-(policy, task) summaries of episode records.

Success is a binomial outcome, so its interval is Wilson's: unlike the normal approximation it
stays inside [0, 1] and does not collapse to zero width at 0/n or n/n, which small benchmark
runs hit all the time. Score is bounded and skewed, so its interval is bootstrapped instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# Resample indices are drawn in chunks of at most this many elements (~32 MiB of int64), so
# memory stays flat however large the sample or the number of resamples.
_BOOTSTRAP_CHUNK_ELEMENTS = 1 << 22


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for successes/n; honest at the 0/n and n/n extremes."""
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denom
    # Rounding can leave a bound a hair past p at 0/n or n/n; pinning keeps p bracketed exactly.
    lo = min(max(0.0, center - half), p)
    hi = max(min(1.0, center + half), p)
    return (float(lo), float(hi))


def _resampled_means(x: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of n_resamples bootstrap resamples of x, drawn in memory-bounded chunks."""
    rows_per_chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // x.size)
    chunks = []
    for start in range(0, n_resamples, rows_per_chunk):
        rows = min(rows_per_chunk, n_resamples - start)
        indices = rng.integers(0, x.size, size=(rows, x.size))
        chunks.append(x[indices].mean(axis=1))
    return np.concatenate(chunks)


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean: no normality assumption for bounded, skewed scores.

    Deterministic for a given seed. Empty input gives (nan, nan); a sample with no spread has
    no uncertainty to estimate and gives (v, v). The interval is widened if needed so that it
    always contains the sample mean.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        return (math.nan, math.nan)
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    means = _resampled_means(x, n_resamples, np.random.default_rng(seed))
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    mean = float(x.mean())
    return (min(float(lo), mean), max(float(hi), mean))


def _stage_rates(stages_json: Sequence[str], n_episodes: int) -> dict[str, float]:
    """Fraction of all episodes that earned points for each stage, in rubric order.

    Crashed episodes store '{}' and so count as earning nothing. The first non-empty record
    fixes the order; a stage that only shows up later is appended after it.
    """
    earned: dict[str, int] = {}
    for text in stages_json:
        for stage, points in json.loads(text or "{}").items():
            earned[stage] = earned.get(stage, 0) + int(float(points) > 0.0)
    return {stage: count / n_episodes for stage, count in earned.items()}


def outcomes(episodes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(errored, success, score) per episode: a crashed episode is a failure with score 0."""
    errored = (episodes["error"].fillna("").astype(str) != "").to_numpy()
    success = episodes["success"].astype(bool).to_numpy() & ~errored
    score = np.where(errored, 0.0, episodes["score"].to_numpy(dtype=float))
    return errored, success, score


def summarize_cell(episodes: pd.DataFrame) -> dict[str, Any]:
    """Summary of one (policy, task) pair; crashed episodes count as failures with score 0.

    Every value is a plain Python type so the result goes straight into summary.json.
    """
    if episodes.empty:
        raise ValueError("summarize_cell needs at least one episode")
    pairs = episodes[["policy", "task"]].drop_duplicates()
    if len(pairs) != 1:
        raise ValueError(f"summarize_cell needs one (policy, task) pair, got {len(pairs)}")
    n = len(episodes)
    errored, success, score = outcomes(episodes)
    successes = int(success.sum())
    healthy = episodes[~errored]  # latency of a crashed episode measures the crash, not the policy
    return {
        "policy": str(pairs["policy"].iloc[0]),
        "task": str(pairs["task"].iloc[0]),
        "episodes": n,
        "successes": successes,
        "success_rate": successes / n,
        "success_ci": list(wilson_interval(successes, n)),
        "mean_score": float(score.mean()),
        "score_ci": list(bootstrap_mean_ci(score)),
        "stage_rates": _stage_rates(episodes["stages"].tolist(), n),
        "errors": int(errored.sum()),
        "mean_steps": float(episodes["steps"].mean()),
        **_latency(healthy),
        "wall_seconds": float(episodes["wall_seconds"].sum()),
    }


def _latency(healthy: pd.DataFrame) -> dict[str, Any]:
    """Mean and 95th percentile over every policy call of the cell's episodes, pooled. Runs
    recorded before episodes kept their calls (no `call_latencies_ms`) can only give the
    per-episode figures: the mean of episode means and the largest episode p95, marked
    `"latency_pooled": false`."""
    if not len(healthy):
        return {"latency_mean_ms": 0.0, "latency_p95_ms": 0.0, "latency_pooled": True}
    if "call_latencies_ms" in healthy and healthy["call_latencies_ms"].notna().all():
        calls = np.concatenate([np.asarray(c, float) for c in healthy["call_latencies_ms"]])
        if len(calls):
            return {"latency_mean_ms": float(calls.mean()), "latency_p95_ms": float(np.percentile(calls, 95)),
                    "latency_pooled": True}
    return {"latency_mean_ms": float(healthy["latency_mean_ms"].mean()),
            "latency_p95_ms": float(healthy["latency_p95_ms"].max()), "latency_pooled": False}


def summarize(episodes: pd.DataFrame) -> list[dict[str, Any]]:
    """One summary per (policy, task), in the order the pairs first appear in the records."""
    groups = episodes.groupby(["policy", "task"], sort=False)
    return [summarize_cell(cell) for _, cell in groups]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: each p-value corrected for the whole family, keeping the
    family-wise error rate at the level without assuming the tests are independent."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
