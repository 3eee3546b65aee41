"""`pi0bench robustness`: one policy on one task, clean and under every (axis, level).

Each cell is an ordinary `eval` run (OUT/cells/clean, OUT/cells/AXIS-LEVEL) with its
perturbation in the run identity, so cells resume as `eval` does and open on their own.
Every cell plays the same initial states, so each perturbed cell is compared with the clean
one episode by episode: the paired score difference with its bootstrap CI, McNemar's exact
test on success and the sign test on score, Holm-adjusted over the run. `examples.png` shows
episode 0's first image under every axis and level.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
import pandas as pd
from rich.console import Console

from pi0bench.envs.perturb import AXES, LEVELS, Perturbation, check_perturbations
from pi0bench.cells import CellRun, load_cells, outcome_columns
from pi0bench.errors import UserError
from pi0bench.evaluate import EvalConfig, evaluate
from pi0bench.paired import add_holm, paired_episodes
from pi0bench.plots import MIN_FONT_PT, figure, figure_png, legend_outside
from pi0bench.report import Section, render_html, render_markdown
from pi0bench.store import atomic_write_bytes, atomic_write_text

CONFIG_FILE = "robustness.json"
PLOT_NAME = "robustness.png"
EXAMPLES_NAME = "examples.png"
CLEAN = "clean"
DROP_FIGURE_IN = (11.0, 4.0)


@dataclass(frozen=True, kw_only=True)
class RobustnessConfig(CellRun):
    axes: tuple[str, ...] = AXES
    levels: tuple[int, ...] = LEVELS

    def validate(self) -> None:
        if not self.axes or not self.levels:
            raise UserError("--axes and --levels each need at least one value")
        for axis in self.axes:
            for level in self.levels:
                check_perturbations((Perturbation(axis, level),))
        for _, _, cell in self.cells():
            cell.validate()

    def cells(self) -> list[tuple[str, int, EvalConfig]]:
        """(axis, level, eval run) of the clean cell (axis "clean", level 0) and every perturbed one."""
        return [(CLEAN, 0, self.eval_config(CLEAN))] + [
            (axis, level, self.eval_config(f"{axis}-{level}", perturbations=(Perturbation(axis, level),)))
            for axis in self.axes for level in self.levels]


def robustness(config: RobustnessConfig, console: Console | None = None) -> dict:
    """Run every missing episode of every cell, then write the summary, plots and report."""
    console = console or Console(stderr=True)
    out = config.start(CONFIG_FILE)
    for axis, level, cell in config.cells():
        console.print(f"[bold]{axis}{f' level {level}' if level else ''}[/]")
        evaluate(cell, console=console)
    atomic_write_bytes(out / EXAMPLES_NAME, example_strip(config))
    return write_robustness(out)


def _row(axis: str, level: int, episodes: pd.DataFrame, paired: dict | None) -> dict:
    row = {"axis": axis, "level": level, **outcome_columns(episodes)}
    if paired:
        row.update(paired_episodes=paired["episodes"], score_difference=paired["score_difference"],
                   score_difference_ci_low=paired["score_difference_ci"][0],
                   score_difference_ci_high=paired["score_difference_ci"][1],
                   success_only_perturbed=paired["success"]["only_a"], success_only_clean=paired["success"]["only_b"],
                   success_p_holm=paired["success"]["p_holm"], score_p_holm=paired["score"]["p_holm"])
    return row


def write_robustness(out: Path) -> dict:
    """summary.csv/json, robustness.png and report.md/html of a robustness directory."""
    out = Path(out)
    config, raw = RobustnessConfig.read(out, CONFIG_FILE, "robustness")
    cells = load_cells(config)
    clean = cells.get((CLEAN, 0))
    keys = [k for k in cells if k[0] != CLEAN]
    paired = add_holm([paired_episodes(cells[k], clean) for k in keys]) if clean is not None else []
    rows = ([_row(CLEAN, 0, clean, None)] if clean is not None else []) + [
        _row(axis, level, cells[(axis, level)], p) for (axis, level), p in zip(keys, paired)]
    summary = {"config": raw, "cells": rows}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    atomic_write_text(out / "summary.csv", pd.DataFrame(rows).to_csv(index=False))
    png = plot_drops(rows, f"{config.policy} on {config.task}")
    atomic_write_bytes(out / PLOT_NAME, png)
    media = {PLOT_NAME: png}
    if (out / EXAMPLES_NAME).is_file():
        media[EXAMPLES_NAME] = (out / EXAMPLES_NAME).read_bytes()
    title = f"Robustness: {config.policy} on {config.task}"
    sections = _sections(config, rows, EXAMPLES_NAME in media)
    atomic_write_text(out / "report.md", render_markdown(title, sections))
    atomic_write_text(out / "report.html", render_html(title, sections, media))
    return summary


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _sections(config: RobustnessConfig, rows: list[dict], examples: bool) -> list[Section]:
    table = Section(
        "Success and score per axis and level, paired with the clean cell",
        headers=["axis", "level", "episodes", "success [95% CI]", "mean score [95% CI]",
                 "score − clean [95% CI]", "success lost / gained", "McNemar p (Holm)", "sign test p (Holm)"],
        rows=[[r["axis"], str(r["level"] or "-"), str(r["episodes"]),
               f"{_pct(r['success_rate'])} [{_pct(r['success_ci_low'])}, {_pct(r['success_ci_high'])}]",
               f"{r['mean_score']:.3f} [{r['score_ci_low']:.3f}, {r['score_ci_high']:.3f}]",
               *((f"{r['score_difference']:+.3f} [{r['score_difference_ci_low']:+.3f}, "
                  f"{r['score_difference_ci_high']:+.3f}]",
                  f"{r['success_only_clean']} / {r['success_only_perturbed']}",
                  f"{r['success_p_holm']:.3g}", f"{r['score_p_holm']:.3g}") if r["axis"] != CLEAN
                 else ("-", "-", "-", "-"))] for r in rows],
        items=[f"every cell plays episodes 0..{config.episodes - 1} from the same initial states; "
               "what each axis and level changes: envs/perturb.py (RANGES) and the README"],
        plot=PLOT_NAME)
    sections = [table]
    if examples:
        sections.append(Section("What each level looks like (episode 0, first camera)", plot=EXAMPLES_NAME))
    return sections


def plot_drops(rows: list[dict], title: str) -> bytes:
    """Score and success difference to clean against level, one line per axis, with CIs."""
    frame = pd.DataFrame([r for r in rows if r["axis"] != CLEAN])
    fig, axes = figure(*DROP_FIGURE_IN, 1, 2)
    axes = axes[0]
    clean = next((r for r in rows if r["axis"] == CLEAN), None)
    for axis in dict.fromkeys(frame["axis"]) if len(frame) else []:
        line = frame[frame["axis"] == axis].sort_values("level")
        levels = [0, *line["level"]]
        (drawn,) = axes[0].plot(levels, [0.0, *line["score_difference"]], marker="o", label=axis)
        axes[0].fill_between(levels, [0.0, *line["score_difference_ci_low"]], [0.0, *line["score_difference_ci_high"]],
                             color=drawn.get_color(), alpha=0.12)
        if clean is not None:
            axes[1].plot(levels, [0.0, *(line["success_rate"] - clean["success_rate"])], marker="o",
                         color=drawn.get_color(), label=axis)
    for ax, label in zip(axes, ("mean score − clean (paired, 95 % CI)", "success rate − clean")):
        ax.axhline(0.0, color="0.5", linewidth=0.8)
        ax.set_xlabel("level (0 = clean)")
        ax.set_ylabel(label)
        ax.set_xticks([0, *LEVELS])
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    legend_outside(axes[1], title="axis")
    return figure_png(fig)


def example_strip(config: RobustnessConfig, size: int = 96) -> bytes:
    """A grid: one row per axis, clean then each level, of episode 0's first image (the
    robot's first default camera) and, on the language row, the prompt."""
    from pi0bench.registry import make_env, make_task
    from pi0bench.rollout import episode_seed

    seed = episode_seed(config.task, config.seed, 0)
    camera = make_task(config.task).make_robot().default_cameras[0]

    def first_image(perturbations):
        env = make_env(config.task, cameras=(camera,), image_size=size, perturbations=perturbations)
        try:
            obs, _ = env.reset(seed=seed)
            return next(iter(obs["images"].values())), obs["prompt"]
        finally:
            env.close()

    clean_image, clean_prompt = first_image(())
    fig, grid = figure(1.9 * (1 + len(config.levels)) + 0.4, 2.0 * len(config.axes), len(config.axes),
                       1 + len(config.levels))
    for row, axis in enumerate(config.axes):
        for col, level in enumerate((0, *config.levels)):
            image, prompt = (clean_image, clean_prompt) if level == 0 else first_image((Perturbation(axis, level),))
            ax = grid[row][col]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("clean" if level == 0 else f"level {level}")
            if col == 0:
                ax.set_ylabel(axis)
            if axis == "language":
                ax.set_xlabel(_wrap(prompt, 24), fontsize=MIN_FONT_PT)
    return figure_png(fig)


def _wrap(text: str, width: int = 28) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])

