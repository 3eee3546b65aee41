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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pi0bench.errors import UserError
from pi0bench.evaluate import EvalConfig, evaluate
from pi0bench.paired import discordant_p
from pi0bench.stats import outcomes
from pi0bench.store import RunStore, atomic_write_text

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
                      out=out / f"{cell['policy']}-{cell['task']}", image_size=int(cell.get("image_size", 128)),
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
    regressed = ((p_success < level and success_drop >= min_effect)
                 or (p_score < level and score_drop >= min_effect))
    return CellResult(new_cell["policy"], new_cell["task"], len(new_s), float(ref_s.mean()), float(new_s.mean()),
                      float(ref_v.mean()), float(new_v.mean()), p_success, p_score, bool(regressed))


def regress(reference_path: Path, out: Path, workers: int = 1, update: bool = False,
            console=None) -> list[CellResult] | None:
    """Re-run the reference's cells; with `update`, store them as the new reference instead."""
    reference = read_reference(reference_path)
    measured = run_cells(reference, out, workers, console)
    if update:
        reference = {**reference, "cells": measured}
        atomic_write_text(Path(reference_path), json.dumps(reference, indent=2) + "\n")
        return None
    if any("success" not in cell for cell in reference["cells"]):
        raise UserError(f"{reference_path} names cells but holds no measurements yet; run with --update once")
    level = float(reference.get("level", LEVEL))
    min_effect = float(reference.get("min_effect", MIN_EFFECT))
    return [judge(ref, new, level, min_effect) for ref, new in zip(reference["cells"], measured)]
