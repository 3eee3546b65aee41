"""Paired comparisons of two policies on the same initial states.

Every policy in a comparison plays episode i from the same seed, so outcomes pair up by
episode, and paired tests are what the design buys: they only look at the episodes where the
two policies differ. Success: McNemar's exact test (a two-sided binomial test on the
discordant pairs). Score: the exact sign test on the per-episode differences, with a paired
bootstrap interval of the mean difference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from pi0bench.stats import bootstrap_mean_ci, holm, outcomes


def discordant_p(k: int, other: int, alternative: str = "two-sided") -> float:
    """Exact binomial p-value of k of the k + other discordant pairs going one way, when
    either way is equally likely; no discordant pair is no evidence (p = 1)."""
    n = k + other
    return 1.0 if n == 0 else float(binomtest(k, n, 0.5, alternative=alternative).pvalue)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> dict:
    """a, b: per-episode success (bool) of two policies on the same episodes."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return {"only_a": only_a, "only_b": only_b, "p_value": discordant_p(only_a, only_b)}


def sign_test(a: np.ndarray, b: np.ndarray) -> dict:
    """a, b: per-episode scores; ties carry no information and are dropped."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    higher_a, higher_b = int((diff > 0).sum()), int((diff < 0).sum())
    return {"higher_a": higher_a, "higher_b": higher_b,
            "p_value": discordant_p(higher_a, higher_b)}


def paired_comparison(a_success, b_success, a_score, b_score) -> dict:
    """Everything the report shows for one pair of policies on one task."""
    diff = np.asarray(a_score, float) - np.asarray(b_score, float)
    return {"episodes": int(len(diff)), "success": mcnemar_exact(a_success, b_success),
            "score": sign_test(a_score, b_score), "score_difference": float(diff.mean()) if len(diff) else 0.0,
            "score_difference_ci": list(bootstrap_mean_ci(diff)) if len(diff) else [0.0, 0.0]}


def shared_episodes(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The episodes both cells played, each cell's rows in episode order (so row i pairs up)."""
    both = sorted(set(a["episode"]) & set(b["episode"]))
    return tuple(frame.set_index("episode").loc[both].reset_index() for frame in (a, b))


def paired_episodes(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """`paired_comparison` of two cells on the episodes both played (matched by index)."""
    a, b = shared_episodes(a, b)
    _, a_success, a_score = outcomes(a)
    _, b_success, b_score = outcomes(b)
    return paired_comparison(a_success, b_success, a_score, b_score)


def add_holm(rows: list[dict]) -> list[dict]:
    """Add `p_holm` beside each row's success and score p-values, adjusted over all the rows."""
    for kind in ("success", "score"):
        for row, adjusted in zip(rows, holm([r[kind]["p_value"] for r in rows])):
            row[kind]["p_holm"] = adjusted
    return rows
