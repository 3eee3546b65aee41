"""`pi0bench latency-sweep`: one policy on one task under every (execution mode, latency).

Each cell is an ordinary real-time `eval` run under OUT/cells/MODE-LATENCYms, so it resumes
the way `eval` does (rerun the command after a crash or kill -9) and can be opened on its
own. Every cell plays the same initial states (episode i has the same seed everywhere), so
each mode is compared with `naive` at the same latency episode by episode. At zero latency
every mode is exactly the normal loop, so one cell (OUT/cells/0ms) stands for all of them.
A mode a policy cannot run (`rtc` without flow matching) is reported as n/a with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import pandas as pd
from rich.console import Console

from pi0bench.cells import CellRun, load_cells, outcome_columns
from pi0bench.errors import UserError
from pi0bench.evaluate import EvalConfig, evaluate
from pi0bench.paired import add_holm, paired_episodes
from pi0bench.plots import figure, figure_png, legend_outside
from pi0bench.realtime import MODES, Realtime
from pi0bench.registry import rtc_unfit_reason
from pi0bench.report import Section, render_html, render_markdown
from pi0bench.stats import outcomes
from pi0bench.store import atomic_write_bytes, atomic_write_text

CONFIG_FILE = "sweep.json"
PLOT_NAME = "latency_sweep.png"
ALL_MODES = "all"  # the label of the zero-latency cell every mode shares
SWEEP_FIGURE_IN = (10.0, 3.8)


@dataclass(frozen=True, kw_only=True)
class SweepConfig(CellRun):
    latencies_ms: tuple[float, ...] = (0.0, 50.0, 100.0, 200.0, 300.0)
    modes: tuple[str, ...] = MODES
    jitter_ms: float = 0.0

    def validate(self) -> None:
        EvalConfig(policy=self.policy, task=self.task, checkpoint=self.checkpoint,
                   policy_args=self.policy_args, episodes=self.episodes, workers=self.workers).validate()
        for mode in self.modes:
            Realtime(mode=mode).validate()
        if not self.modes or not self.latencies_ms:
            raise UserError("--modes and --latency-ms each need at least one value")
        for latency in self.latencies_ms:
            Realtime(latency_ms=latency, jitter_ms=self.jitter_ms).validate()

    def cells(self) -> list[tuple[str, float, EvalConfig]]:
        """(mode, latency, eval run) of every cell the policy can play; without jitter the
        zero-latency cell is one, shared by every mode (mode "all")."""
        skipped = not_applicable(self)
        cells = []
        for latency in self.latencies_ms:
            if latency == 0 and not self.jitter_ms:
                cells.append((ALL_MODES, latency, self._cell("naive", latency, f"{latency:g}ms")))
                continue
            cells += [(mode, latency, self._cell(mode, latency, f"{mode}-{latency:g}ms"))
                      for mode in self.modes if mode not in skipped]
        return cells

    def _cell(self, mode: str, latency_ms: float, name: str) -> EvalConfig:
        return self.eval_config(name, realtime=Realtime(mode=mode, latency_ms=latency_ms, jitter_ms=self.jitter_ms))


def not_applicable(config: SweepConfig) -> dict[str, str]:
    """mode -> why the policy cannot run it."""
    reasons = {"rtc": rtc_unfit_reason(config.policy)} if "rtc" in config.modes else {}
    return {mode: reason for mode, reason in reasons.items() if reason}


def latency_sweep(config: SweepConfig, console: Console | None = None) -> dict:
    """Run every missing episode of every cell, then write summary.csv/json, the plot and the report."""
    console = console or Console(stderr=True)
    out = config.start(CONFIG_FILE)
    skipped = not_applicable(config)
    for mode, reason in skipped.items():
        console.print(f"[yellow]{mode}: n/a[/] ({reason})")
    for mode, latency, cell in config.cells():
        console.print(f"[bold]{mode} at {latency:g} ms[/]")
        evaluate(cell, console=console, baseline=False)
    return write_sweep(out)


def _row(mode: str, latency: float, episodes: pd.DataFrame) -> dict:
    _, success, _ = outcomes(episodes)
    task_time = episodes["sim_seconds"].to_numpy(float)[success]
    columns = outcome_columns(episodes)
    errors = columns.pop("errors")
    return {"mode": mode, "latency_ms": latency, **columns,
            "mean_success_seconds": float(task_time.mean()) if len(task_time) else float("nan"),
            "waiting_share": float((episodes["delay_steps"] / episodes["steps"].clip(lower=1)).mean()),
            "errors": errors}


def _paired_rows(cells: dict[tuple[str, float], pd.DataFrame]) -> list[dict]:
    """Each mode against naive at the same latency, on the episodes both played; p-values
    Holm-adjusted over the whole sweep."""
    return add_holm([{"mode": mode, "latency_ms": latency, **paired_episodes(episodes, cells[("naive", latency)])}
                     for (mode, latency), episodes in cells.items()
                     if mode not in ("naive", ALL_MODES) and ("naive", latency) in cells])


def write_sweep(out: Path) -> dict:
    """summary.csv, summary.json, latency_sweep.png, report.md and report.html of a sweep directory."""
    out = Path(out)
    config, raw = SweepConfig.read(out, CONFIG_FILE, "latency-sweep")
    cells = load_cells(config)
    rows = [_row(mode, latency, episodes) for (mode, latency), episodes in cells.items()]
    paired = _paired_rows(cells)
    summary = {"config": raw, "cells": rows, "paired_vs_naive": paired, "not_applicable": not_applicable(config)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    atomic_write_text(out / "summary.csv", pd.DataFrame(rows).to_csv(index=False))
    png = plot_sweep(rows, f"{config.policy} on {config.task}")
    atomic_write_bytes(out / PLOT_NAME, png)
    title = f"Latency sweep: {config.policy} on {config.task}"
    sections = _sections(config, rows, paired, summary["not_applicable"])
    atomic_write_text(out / "report.md", render_markdown(title, sections))
    atomic_write_text(out / "report.html", render_html(title, sections, {PLOT_NAME: png}))
    return summary


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _sections(config: SweepConfig, rows: list[dict], paired: list[dict], skipped: dict) -> list[Section]:
    jitter = f" ± {config.jitter_ms:g} ms seeded jitter per call" if config.jitter_ms else ""
    sections = [
        Section("Cells", headers=["mode", "latency (ms)", "episodes", "success [95% CI]", "mean score [95% CI]",
                                  "task time of successes (s)", "steps waiting", "errors"],
                rows=[[r["mode"], f"{r['latency_ms']:g}", str(r["episodes"]),
                       f"{_pct(r['success_rate'])} [{_pct(r['success_ci_low'])}, {_pct(r['success_ci_high'])}]",
                       f"{r['mean_score']:.3f} [{r['score_ci_low']:.3f}, {r['score_ci_high']:.3f}]",
                       "-" if np.isnan(r["mean_success_seconds"]) else f"{r['mean_success_seconds']:.1f}",
                       _pct(r["waiting_share"]), str(r["errors"])] for r in rows],
                items=[f"every cell plays episodes 0..{config.episodes - 1} from the same initial states; "
                       f"latency fixed{jitter}; at 0 ms every mode is the normal loop (one shared cell)"],
                plot=PLOT_NAME),
        Section("Each mode against naive at the same latency (paired by episode)",
                headers=["mode", "latency (ms)", "episodes", "success only mode / only naive",
                         "McNemar p (Holm)", "score difference [95% CI]", "sign test p (Holm)"],
                rows=[[p["mode"], f"{p['latency_ms']:g}", str(p["episodes"]),
                       f"{p['success']['only_a']} / {p['success']['only_b']}", f"{p['success']['p_holm']:.3g}",
                       f"{p['score_difference']:+.3f} [{p['score_difference_ci'][0]:+.3f}, "
                       f"{p['score_difference_ci'][1]:+.3f}]", f"{p['score']['p_holm']:.3g}"] for p in paired]),
    ]
    if skipped:
        sections.append(Section("Not applicable", items=[f"{mode}: {reason}" for mode, reason in skipped.items()]))
    return sections


def plot_sweep(rows: list[dict], title: str) -> bytes:
    """Success and score against latency, one line per mode, with their 95 % CI bands."""
    frame = pd.DataFrame(rows, columns=list(rows[0]) if rows else ["mode"])
    fig, axes = figure(*SWEEP_FIGURE_IN, 1, 2, sharex=True)
    axes = axes[0]
    shared = frame[frame["mode"] == ALL_MODES]  # the zero-latency cell starts every mode's line
    for mode in dict.fromkeys(frame["mode"][frame["mode"] != ALL_MODES]):
        line = pd.concat([shared.assign(mode=mode), frame[frame["mode"] == mode]]).sort_values("latency_ms")
        for ax, (value, low, high) in zip(axes, (("success_rate", "success_ci_low", "success_ci_high"),
                                                 ("mean_score", "score_ci_low", "score_ci_high"))):
            (drawn,) = ax.plot(line["latency_ms"], line[value], marker="o", label=mode)
            ax.fill_between(line["latency_ms"], line[low], line[high], color=drawn.get_color(), alpha=0.15)
    for ax, label in zip(axes, ("success rate", "mean score")):
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    legend_outside(axes[1], title="mode")
    return figure_png(fig)
