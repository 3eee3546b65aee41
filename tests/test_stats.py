"""Interval maths against known values, and cell summaries on hand-built episode records."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from pi0bench.stats import bootstrap_mean_ci, summarize, summarize_cell, wilson_interval


def _episode(policy: str, task: str, episode: int, stages: dict[str, float],
             success: bool, error: str = "") -> dict:
    points = sum(stages.values())
    return {
        "task": task, "policy": policy, "seed": 0, "episode": episode,
        "episode_seed": 1000 + episode, "success": success, "score": points / 2.0,
        "points": points, "max_points": 2.0, "stages": json.dumps(stages),
        "steps": 100 + episode, "sim_seconds": 5.0, "wall_seconds": 2.0,
        "latency_mean_ms": 10.0 * (episode + 1), "latency_p95_ms": 20.0 * (episode + 1),
        "error": error,
    }


def _crash(policy: str, task: str, episode: int, error: str = "RuntimeError: boom") -> dict:
    row = _episode(policy, task, episode, {}, success=False, error=error)
    row.update(score=0.0, points=0.0, steps=3, latency_mean_ms=999.0, latency_p95_ms=5000.0)
    return row


@pytest.fixture
def cell_frame() -> pd.DataFrame:
    """Four episodes of one cell: a full success, a partial, a zero, and a crash."""
    return pd.DataFrame([
        _episode("scripted", "drawer_tidy", 0, {"drawer_opened": 1.0, "cube_in": 1.0}, True),
        _episode("scripted", "drawer_tidy", 1, {"drawer_opened": 1.0, "cube_in": 0.0}, False),
        _episode("scripted", "drawer_tidy", 2, {"drawer_opened": 0.0, "cube_in": 0.0}, False),
        _crash("scripted", "drawer_tidy", 3),
    ])


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [(7, 10, (0.3968, 0.8922)), (0, 10, (0.0, 0.2775)), (10, 10, (0.7225, 1.0)),
     (1, 2, (0.0945, 0.9055))],
)
def test_wilson_known_values(successes: int, n: int, expected: tuple[float, float]) -> None:
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(expected[0], abs=1e-4)
    assert hi == pytest.approx(expected[1], abs=1e-4)


def test_wilson_extremes_are_exact() -> None:
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0


def test_wilson_no_data_is_uninformative() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("n", [1, 3, 10, 57, 1000])
def test_wilson_brackets_point_estimate(n: int) -> None:
    for successes in range(0, n + 1, max(1, n // 7)):
        lo, hi = wilson_interval(successes, n)
        assert 0.0 <= lo <= successes / n <= hi <= 1.0


def test_wilson_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    values = np.random.default_rng(42).random(30)
    assert bootstrap_mean_ci(values, seed=7) == bootstrap_mean_ci(values, seed=7)


def test_bootstrap_brackets_mean_for_any_seed() -> None:
    values = [0.0, 0.1, 0.5, 0.5, 1.0, 1.0, 0.9, 0.2]
    mean = float(np.mean(values))
    intervals = [bootstrap_mean_ci(values, seed=seed) for seed in (0, 1, 2)]
    for lo, hi in intervals:
        assert 0.0 <= lo < mean < hi <= 1.0
    assert len(set(intervals)) > 1  # the seed actually drives the resampling


def test_bootstrap_chunking_matches_reported_width() -> None:
    # n_resamples not a multiple of any chunk size, and a sample large enough to need chunks.
    values = np.random.default_rng(0).random(5000)
    lo, hi = bootstrap_mean_ci(values, n_resamples=1001)
    se = values.std(ddof=1) / math.sqrt(values.size)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_bootstrap_constant_sample_has_zero_width() -> None:
    assert bootstrap_mean_ci([0.1] * 10) == (0.1, 0.1)


def test_bootstrap_empty_is_nan() -> None:
    lo, hi = bootstrap_mean_ci([])
    assert math.isnan(lo) and math.isnan(hi)


def test_summarize_cell_counts_errors_as_failures(cell_frame: pd.DataFrame) -> None:
    cell = summarize_cell(cell_frame)
    assert (cell["policy"], cell["task"]) == ("scripted", "drawer_tidy")
    assert cell["episodes"] == 4
    assert cell["successes"] == 1
    assert cell["success_rate"] == 0.25
    assert cell["success_ci"] == pytest.approx(list(wilson_interval(1, 4)))
    assert cell["mean_score"] == pytest.approx((1.0 + 0.5 + 0.0 + 0.0) / 4)
    assert cell["score_ci"][0] <= cell["mean_score"] <= cell["score_ci"][1]
    assert cell["errors"] == 1


def test_summarize_cell_stage_rates_over_all_episodes(cell_frame: pd.DataFrame) -> None:
    rates = summarize_cell(cell_frame)["stage_rates"]
    assert list(rates) == ["drawer_opened", "cube_in"]  # rubric order, not alphabetical
    assert rates == {"drawer_opened": 0.5, "cube_in": 0.25}


def test_summarize_cell_timing_ignores_crashed_latency(cell_frame: pd.DataFrame) -> None:
    cell = summarize_cell(cell_frame)
    assert cell["latency_mean_ms"] == pytest.approx(20.0)  # mean of 10, 20, 30
    # runs recorded without per-call latencies: the per-episode figures, marked as such
    assert cell["latency_p95_ms"] == pytest.approx(60.0) and cell["latency_pooled"] is False
    assert cell["mean_steps"] == pytest.approx((100 + 101 + 102 + 3) / 4)
    assert cell["wall_seconds"] == pytest.approx(8.0)


def test_summarize_cell_pools_every_call_for_latency(cell_frame: pd.DataFrame) -> None:
    """One fast episode of many calls and one slow episode of few: the pooled p95 is the 95th
    percentile of all calls, not the larger episode p95 (which is what it was before)."""
    frame = cell_frame.copy()
    fast, slow = [1.0] * 95 + [2.0] * 5, [100.0] * 5
    frame["call_latencies_ms"] = [fast, slow, fast, [9999.0]]  # the crash's calls are ignored
    cell = summarize_cell(frame)
    calls = np.array(fast + slow + fast)
    assert cell["latency_pooled"] is True
    assert cell["latency_p95_ms"] == pytest.approx(np.percentile(calls, 95))
    assert cell["latency_mean_ms"] == pytest.approx(calls.mean())
    assert cell["latency_p95_ms"] < 100.0  # only 5 of 205 calls are slow


def test_summarize_cell_all_crashed_has_zero_latency() -> None:
    frame = pd.DataFrame([_crash("random", "drawer_tidy", i) for i in range(3)])
    cell = summarize_cell(frame)
    assert cell["latency_mean_ms"] == 0.0 and cell["latency_p95_ms"] == 0.0
    assert cell["stage_rates"] == {}
    assert cell["success_ci"][0] == 0.0


def test_summarize_cell_is_plain_json(cell_frame: pd.DataFrame) -> None:
    cell = summarize_cell(cell_frame)
    assert json.loads(json.dumps(cell)) == cell
    assert all(type(v) in (str, int, float, bool, list, dict) for v in cell.values())


def test_summarize_cell_rejects_mixed_cells(cell_frame: pd.DataFrame) -> None:
    mixed = pd.concat([cell_frame, pd.DataFrame([_crash("random", "drawer_tidy", 0)])])
    with pytest.raises(ValueError):
        summarize_cell(mixed)


def test_summarize_keeps_first_appearance_order(cell_frame: pd.DataFrame) -> None:
    # "zeta" first and interleaved: a sorted or grouped-by-default order would put "alpha" first.
    zeta = [_episode("zeta", "drawer_tidy", i, {"drawer_opened": 1.0}, True) for i in range(2)]
    alpha = [_episode("alpha", "drawer_tidy", i, {"drawer_opened": 0.0}, False) for i in range(3)]
    frame = pd.DataFrame([zeta[0], alpha[0], alpha[1], zeta[1], alpha[2]])
    cells = summarize(frame)
    assert [(c["policy"], c["episodes"]) for c in cells] == [("zeta", 2), ("alpha", 3)]
    assert [c["success_rate"] for c in cells] == [1.0, 0.0]


def test_holm_adjusts_step_down_and_keeps_order():
    from pi0bench.stats import holm

    # m = 4: 0.01*4, max(0.04, 0.02*3), max(.., 0.03*2), max(.., 0.5*1) — monotone, capped at 1
    assert holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert holm([0.4, 0.3]) == pytest.approx([0.6, 0.6])  # 0.3·2, then max(0.6, 0.4·1)
    assert holm([]) == []
