"""`pi0bench regress`: fail CI when a change lowers sim scores.

A reference file names cells (policy, task, episodes, eval options) and stores, per episode,
the success and score measured when the reference was made. `regress` re-runs exactly those
episodes (same seeds, so the same initial states) and compares them pair by pair:

- success: one-sided exact McNemar test (episodes the reference won and the new run lost,
  against the reverse);
- score: one-sided exact sign test on the per-episode differences.

A cell regresses when either test is significant at `level` (default 0.05) AND the drop is at
least `min_effect` (default 0.10 in success rate or mean score), so a real but negligible
wobble does not fail a build. Simulation is deterministic, so unchanged code replays every
episode identically and passes with p = 1.

Power: each cell's *detectable drop* is the smallest expected fall in success rate (or, for a
cell with too few successes to lose, in mean score) that makes the cell fail with probability 0.8, for a
degradation that loses each of the reference's successful (or scoring) episodes
independently with the same probability. With the one-sided exact tests a cell needs at
least 5 lost episodes at level 0.05 (0.5^5 < 0.05), so a cell of 4 episodes can never fail;
`--update` refuses such a cell and names the episodes it would need.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binom

from pi0bench.errors import UserError
from pi0bench.evaluate import EvalConfig, evaluate
from pi0bench.paired import discordant_p
from pi0bench.stats import outcomes
from pi0bench.store import RunStore, atomic_write_text, cell_dir

LEVEL = 0.05
MIN_EFFECT = 0.10
CELL_KEYS = ("policy", "task", "episodes", "seed", "cameras", "image_size", "checkpoint", "policy_args")


@dataclass
class CellResult:
    policy: str
    task: str
    episodes: int
    reference_success: float
    new_success: float
    reference_score: float
    new_score: float
    p_success: float
    p_score: float
    regressed: bool
    detectable_drop: float | None = None  # see detectable_drop(); None: the cell can never fail
    detectable_in: str = "success"  # what that drop is measured in: "success" or "score"


POWER = 0.8


def losses_needed(n: int, level: float, min_effect: float, per_loss: float = 1.0) -> int:
    """Episodes that must get worse (and none better) for a cell of `n` to fail: enough for the
    exact one-sided test (0.5^b < level) and for the drop (b · per_loss / n ≥ min_effect)."""
    significant = math.floor(math.log2(1.0 / level)) + 1
    large = math.ceil(min_effect * n / per_loss - 1e-9)
    return max(significant, large)


def _smallest_loss_rate(k: int, needed: int, power: float) -> float | None:
    """The smallest per-episode loss probability q with P(Binomial(k, q) ≥ needed) ≥ power."""
    if k < needed:
        return None
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if binom.sf(needed - 1, k, mid) >= power else (mid, hi)
    return hi


def detectable_drop(success: list, score: list, level: float = LEVEL, min_effect: float = MIN_EFFECT,
                    power: float = POWER) -> tuple[float | None, str]:
    """(smallest expected drop this cell detects with `power`, "success" or "score"). Success
    is judged when the reference's successes are enough to lose; otherwise the score (episodes
    with points), so a policy that rarely succeeds but scores steadily still has a gate."""
    success, score = np.asarray(success, bool), np.asarray(score, float)
    n = len(success)
    if success.any():
        k = int(success.sum())
        q = _smallest_loss_rate(k, losses_needed(n, level, min_effect), power)
        if q is not None:
            return q * k / n, "success"
    scoring = score[score > 0]
    mean = float(scoring.mean()) if len(scoring) else 0.0
    q = _smallest_loss_rate(len(scoring), losses_needed(n, level, min_effect, per_loss=mean), power) if mean else None
    if q is None:
        return None, "success" if success.any() else "score"
    return q * len(scoring) * mean / n, "score"


def episodes_needed(success_rate: float, level: float = LEVEL, min_effect: float = MIN_EFFECT) -> int | None:
    """The fewest episodes with which a cell at this success rate can fail at all."""
    if success_rate <= 0:
        return None
    for n in range(1, 100_000):
        if round(success_rate * n) >= losses_needed(n, level, min_effect):
            return n
    return None


def read_reference(path: Path) -> dict:
    if not Path(path).is_file():
        raise UserError(f"no reference at {path}: write the cells it should hold (see README 'Regression on "
                        f"sim scores'), then run `pi0bench regress --reference {path} --update`")
    try:
        reference = json.loads(Path(path).read_text())
        if not all("policy" in cell and "task" in cell for cell in reference["cells"]):
            raise KeyError("every cell needs a policy and a task")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a regression reference ({exc}); see README 'Regression on sim scores'") from None
    return reference


def _eval_config(cell: dict, out: Path, workers: int) -> EvalConfig:
    cameras = cell.get("cameras")
    args = cell.get("policy_args") or {}
    return EvalConfig(policy=cell["policy"], task=cell["task"], episodes=int(cell.get("episodes", 10)),
                      seed=int(cell.get("seed", 0)), workers=workers,
                      out=cell_dir(out, cell["policy"], cell["task"]), image_size=int(cell.get("image_size", 128)),
                      cameras=None if cameras is None else tuple(cameras), checkpoint=cell.get("checkpoint"),
                      policy_args=tuple(sorted(args.items())), overwrite=True)


def run_cells(reference: dict, out: Path, workers: int, console=None) -> list[dict]:
    """Play every cell of the reference afresh; per cell its episodes' successes and scores."""
    measured = []
    for cell in reference["cells"]:
        config = _eval_config(cell, Path(out), workers)
        evaluate(config, console=console)
        _, success, score = outcomes(RunStore(config.run_dir).load().sort_values("episode"))
        measured.append({**{k: cell.get(k) for k in CELL_KEYS if k in cell},
                         "success": success.astype(int).tolist(), "score": score.round(6).tolist()})
    return measured


def judge(reference_cell: dict, new_cell: dict, level: float, min_effect: float) -> CellResult:
    ref_s, new_s = np.asarray(reference_cell["success"], bool), np.asarray(new_cell["success"], bool)
    ref_v, new_v = np.asarray(reference_cell["score"], float), np.asarray(new_cell["score"], float)
    if len(ref_s) != len(new_s):
        raise UserError(f"{new_cell['policy']}/{new_cell['task']}: the reference has {len(ref_s)} episodes, "
                        f"the new run {len(new_s)}")
    # one-sided: P(at least this many discordant pairs go against the new run | no change)
    p_success = discordant_p(int((ref_s & ~new_s).sum()), int((~ref_s & new_s).sum()), "greater")
    diff = new_v - ref_v
    p_score = discordant_p(int((diff < 0).sum()), int((diff > 0).sum()), "greater")
    success_drop = ref_s.mean() - new_s.mean()
    score_drop = ref_v.mean() - new_v.mean()
    # a drop of exactly min_effect counts (5/50 lost is 1.0 - 0.9 = 0.0999... in floating point)
    large = min_effect - 1e-9
    regressed = ((p_success < level and success_drop >= large)
                 or (p_score < level and score_drop >= large))
    drop, measure = detectable_drop(ref_s, ref_v, level, min_effect)
    return CellResult(new_cell["policy"], new_cell["task"], len(new_s), float(ref_s.mean()), float(new_s.mean()),
                      float(ref_v.mean()), float(new_v.mean()), p_success, p_score, bool(regressed), drop, measure)


def check_can_fail(cells: list[dict], level: float, min_effect: float) -> None:
    """Refuse a reference with a cell that no degradation could ever fail."""
    for cell in cells:
        drop, _ = detectable_drop(cell["success"], cell["score"], level, min_effect)
        if drop is None:
            rate = float(np.mean(cell["success"]))
            need = episodes_needed(rate, level, min_effect)
            fix = (f"it needs at least {need} episodes at its success rate {rate:.0%}" if need else
                   "it has no successful or scoring episode to lose: give it a policy that scores")
            raise UserError(f"cell {cell['policy']}/{cell['task']} ({len(cell['success'])} episodes) can never "
                            f"fail at level {level} with a drop of at least {min_effect}: {fix}")


def regress(reference_path: Path, out: Path, workers: int = 1, update: bool = False,
            console=None) -> list[CellResult] | None:
    """Re-run the reference's cells; with `update`, store them as the new reference instead."""
    reference = read_reference(reference_path)
    measured = run_cells(reference, out, workers, console)
    level = float(reference.get("level", LEVEL))
    min_effect = float(reference.get("min_effect", MIN_EFFECT))
    if update:
        check_can_fail(measured, level, min_effect)
        reference = {**reference, "cells": measured}
        atomic_write_text(Path(reference_path), json.dumps(reference, indent=2) + "\n")
        return None
    if any("success" not in cell for cell in reference["cells"]):
        raise UserError(f"{reference_path} names cells but holds no measurements yet; run with --update once")
    return [judge(ref, new, level, min_effect) for ref, new in zip(reference["cells"], measured)]
