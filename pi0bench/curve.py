"""Learning curves and the fit check: is a policy under-trained, or failing to generalise?

`fit_check` evaluates one checkpoint twice: on the initial states of its own training
episodes (the dataset's kept demos, re-created from the recording seed) and on held-out
initial states (the evaluation seed). Low success on both means under-fitting (or a bug);
high on the training states only means the data does not cover the held-out ones.

`learning_curve` does the same for every milestone checkpoint a training run kept
(`checkpoints/step-N`), and writes curve.csv and curve.png: success and score against steps.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from rich.console import Console

from pi0bench import checkpoint
from pi0bench.errors import UserError
from pi0bench.evaluate import EvalConfig, evaluate
from pi0bench.lerobot_dataset import EPISODES_FILE, read_meta
from pi0bench.rollout import episode_seed
from pi0bench.stats import bootstrap_mean_ci, wilson_interval
from pi0bench.store import RunStore


@dataclass(frozen=True)
class FitRow:
    split: str  # "train" (the checkpoint's own demo states) or "held-out"
    episodes: int
    successes: int
    success_ci: tuple[float, float]
    mean_score: float
    score_ci: tuple[float, float]


def training_episodes(data: Path) -> tuple[str, int, list[int]]:
    """(task, recording seed, kept attempt indices) of a demos dataset."""
    info, _ = read_meta(data)
    source = info.get("pi0bench")
    if not source:
        raise UserError(f"{data} does not say how it was recorded (info.json has no 'pi0bench' entry); "
                        "record it again with this version's `pi0bench demos`")
    seeds = pd.read_parquet(Path(data) / EPISODES_FILE)["seed"].tolist()
    attempted = int(source["episodes_attempted"])
    index_of = {episode_seed(source["task"], source["seed"], i): i for i in range(attempted)}
    return source["task"], int(source["seed"]), [index_of[s] for s in seeds]


def _row(split: str, episodes: pd.DataFrame) -> FitRow:
    n, wins = len(episodes), int(episodes["success"].sum())
    scores = episodes["score"].to_numpy(float)
    return FitRow(split, n, wins, wilson_interval(wins, n), float(scores.mean()),
                  tuple(bootstrap_mean_ci(scores)))


def check_episodes(episodes: int) -> None:
    if episodes < 1:
        raise UserError(f"--episodes must be at least 1 (got {episodes})")


def fit_check(checkpoint_dir: Path, data: Path, episodes: int, out: Path, workers: int = 1,
              console: Console | None = None, **eval_options) -> list[FitRow]:
    """Evaluate a checkpoint on `episodes` of its training states and `episodes` held-out ones."""
    check_episodes(episodes)
    policy = checkpoint.read_config(checkpoint_dir).get("policy")
    task, demo_seed, kept = training_episodes(data)
    if not kept:
        raise UserError(f"{data} has no episodes")
    train_idx = kept[:episodes]
    # The training states are attempts 0..max(kept) of the recording seed; only kept ones count.
    train_cfg = EvalConfig(policy=policy, task=task, episodes=max(train_idx) + 1, seed=demo_seed,
                           workers=workers, out=Path(out) / "train", checkpoint=str(checkpoint_dir),
                           **eval_options)
    held_cfg = EvalConfig(policy=policy, task=task, episodes=episodes, seed=0, workers=workers,
                          out=Path(out) / "held-out", checkpoint=str(checkpoint_dir), **eval_options)
    if demo_seed == held_cfg.seed:
        raise UserError("the dataset was recorded with seed 0, the evaluation seed: there are no "
                        "held-out states; record demos with another --seed")
    evaluate(replace(train_cfg, only_episodes=tuple(train_idx)), console)
    evaluate(held_cfg, console)
    train = RunStore(train_cfg.run_dir).load()
    return [_row("train", train[train["episode"].isin(train_idx)]),
            _row("held-out", RunStore(held_cfg.run_dir).load())]


def learning_curve(run_dir: Path, data: Path, episodes: int, out: Path, workers: int = 1,
                   console: Console | None = None, **eval_options) -> Path:
    """Fit-check every milestone checkpoint of a training run; returns curve.csv's path."""
    from pi0bench.train import milestones

    check_episodes(episodes)  # before the first milestone's runs

    rows = []
    for step, directory in milestones(run_dir):
        for row in fit_check(directory, data, episodes, Path(out) / f"step-{step:06d}", workers, console,
                             **eval_options):
            rows.append({"step": step, "split": row.split, "episodes": row.episodes, "successes": row.successes,
                         "success_rate": row.successes / row.episodes, "success_lo": row.success_ci[0],
                         "success_hi": row.success_ci[1], "mean_score": row.mean_score,
                         "score_lo": row.score_ci[0], "score_hi": row.score_ci[1]})
    path = Path(out) / "curve.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_curve(pd.DataFrame(rows), Path(out) / "curve.png", title=str(run_dir))
    return path


def plot_curve(rows: pd.DataFrame, path: Path, title: str) -> None:
    from pi0bench.plots import figure, figure_png, legend_outside
    from pi0bench.store import atomic_write_bytes

    fig, axes = figure(9.5, 3.4, 1, 2, sharex=True)
    axes = axes[0]
    for split, style in (("held-out", "-o"), ("train", "--s")):
        part = rows[rows["split"] == split].sort_values("step")
        if part.empty:
            continue
        for ax, (value, lo, hi) in zip(axes, (("success_rate", "success_lo", "success_hi"),
                                               ("mean_score", "score_lo", "score_hi"))):
            (drawn,) = ax.plot(part["step"], part[value], style, label=f"{split} states")
            ax.fill_between(part["step"], part[lo], part[hi], color=drawn.get_color(), alpha=0.2)
    for ax, label in zip(axes, ("success rate (95 % Wilson CI)", "mean score (95 % bootstrap CI)")):
        ax.xaxis.set_major_formatter(lambda value, _: f"{value / 1000:g}k")  # no run-together tick labels
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    legend_outside(axes[1])
    fig.suptitle(title)
    atomic_write_bytes(Path(path), figure_png(fig))
