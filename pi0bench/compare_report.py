"""The comparison report: what a researcher pastes into a paper or a pull request.

summary.json and summary.csv (one row per policy x task) for machines; report.md (tables with
the best policy of each task in bold) and report.html for people (figures embedded, videos
linked from the comparison directory); plots in the paper's style: mean score per task with CI
whiskers, per-stage bars, success vs latency.
Everything is recomputed from the stored episodes, so `pi0bench report DIR` rebuilds it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pi0bench.compare_store import load_comparison
from pi0bench.paired import add_holm, paired_episodes
from pi0bench.plots import MIN_FONT_PT, figure, figure_png, legend_outside
from pi0bench.report import Section, Shaded, Strong, render_html, render_markdown, summary_csv
from pi0bench.stats import summarize
from pi0bench.store import atomic_write_bytes, cell_dir, episode_stem

PLOTS = {"scores": "scores.png", "stages": "stages.png", "latency": "latency.png"}


def pairwise(episodes: pd.DataFrame, policies: list[str], tasks: list[str]) -> list[dict]:
    """Paired tests for every two policies on every task both ran, over their shared episodes."""
    rows = []
    for task in tasks:
        for a, b in itertools.combinations(policies, 2):
            ea, eb = (episodes[(episodes.policy == p) & (episodes.task == task)] for p in (a, b))
            if not set(ea["episode"]) & set(eb["episode"]):
                continue
            rows.append({"task": task, "a": a, "b": b, **paired_episodes(ea, eb)})
    return add_holm(rows)  # each test's family: every pair on every task


def aggregate(cells: list[dict], policies: list[str], tasks: list[str]) -> list[dict]:
    """Mean over tasks of each policy's mean normalised score (the paper's summary number);
    only policies that ran every task get one, so the averages are over the same tasks."""
    rows = []
    for policy in policies:
        mine = {c["task"]: c for c in cells if c["policy"] == policy}
        complete = all(t in mine for t in tasks)
        rows.append({"policy": policy, "tasks": len(mine),
                     "mean_score": float(np.mean([mine[t]["mean_score"] for t in tasks])) if complete else None,
                     "success_rate": float(np.mean([mine[t]["success_rate"] for t in tasks])) if complete else None})
    return rows


def video_rows(out: Path, config: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    """Per task and episode < videos, each policy's video of that same initial state."""
    rows = []
    for task in config["tasks"]:
        for episode in range(config.get("videos", 0)):
            row = []
            for policy in config["policies"]:
                stem = episode_stem(policy, task, config["seed"], episode)
                path = cell_dir(out, policy, task) / "videos" / f"{stem}.mp4"
                if path.is_file():
                    row.append((policy, str(path.relative_to(out))))
            if row:
                rows.append((f"{task}, episode {episode}", row))
    return rows


def _cell_text(cell: dict, best: bool) -> tuple[str, str]:
    (slo, shi), (clo, chi) = cell["success_ci"], cell["score_ci"]
    success = f"{100 * cell['success_rate']:.0f} % [{100 * slo:.0f}, {100 * shi:.0f}]"
    score = f"{cell['mean_score']:.2f} [{clo:.2f}, {chi:.2f}]"
    return (Strong(success), Strong(score)) if best else (success, score)


SIGNIFICANCE = 0.05  # on the Holm-adjusted p of the sign test on scores


def pair_matrix(pairs: list[dict], task: str) -> dict[tuple[str, str], dict]:
    """(row, column) -> the paired score difference row − column on `task`, its CI and the
    Holm-adjusted sign-test p; each pair appears both ways (negated and mirrored)."""
    matrix = {}
    for p in pairs:
        if p["task"] != task:
            continue
        low, high = p["score_difference_ci"]
        matrix[(p["a"], p["b"])] = {"difference": p["score_difference"], "ci": [low, high], "p_holm": p["score"]["p_holm"]}
        matrix[(p["b"], p["a"])] = {"difference": -p["score_difference"], "ci": [-high, -low], "p_holm": p["score"]["p_holm"]}
    return matrix


def _matrix_cell(entry: dict | None) -> Shaded | str:
    if entry is None:
        return "·"
    significant = entry["p_holm"] < SIGNIFICANCE
    low, high = entry["ci"]
    # + 0.0 turns a negated zero (-0.0) into 0.0, so no "-0.00" is printed
    text = f"{entry['difference'] + 0.0:+.2f} [{low + 0.0:+.2f}, {high + 0.0:+.2f}]{' *' if significant else ''}"
    if entry["difference"] == 0:
        return text
    positive = entry["difference"] > 0
    colour = ("#9be29b" if positive else "#f2a3a3") if significant else ("#e3f6e3" if positive else "#fbe6e6")
    return Shaded(text, colour)


def _matrix_sections(config: dict, pairs: list[dict]) -> list[Section]:
    """Per task, who beats whom: rows minus columns, significance marked after Holm."""
    sections = []
    for task in config["tasks"]:
        present = [p for p in config["policies"] if any(task == q["task"] and p in (q["a"], q["b"]) for q in pairs)]
        if len(present) < 2:
            continue
        matrix = pair_matrix(pairs, task)
        sections.append(Section(
            f"Who beats whom on {task}: mean score of the row minus the column",
            note="Paired on the same initial states, 95 % bootstrap CI; * = sign test significant at 0.05 after "
                 "Holm's adjustment over every pair and task; green: the row scores higher, red: lower, "
                 "pale: not significant.",
            headers=["", *present],
            rows=[[Strong(row), *(_matrix_cell(matrix.get((row, col))) if row != col else "–" for col in present)]
                  for row in present]))
    return sections


def _sections(config: dict, cells: list[dict], not_applicable: list[dict], pairs: list[dict],
              totals: list[dict], videos: list) -> list[Section]:
    by_key = {(c["policy"], c["task"]): c for c in cells}
    na = {(n["policy"], n["task"]) for n in not_applicable}
    rows = []
    for task in config["tasks"]:
        present = [by_key[(p, task)] for p in config["policies"] if (p, task) in by_key]
        top = max((c["mean_score"] for c in present), default=None)
        for policy in config["policies"]:
            if (policy, task) in by_key:
                c = by_key[(policy, task)]
                success, score = _cell_text(c, top is not None and top > 0 and c["mean_score"] == top)
                rows.append([task, policy, str(c["episodes"]), success, score, str(c["errors"])])
            elif (policy, task) in na:
                rows.append([task, policy, "–", "n/a", "n/a", "–"])
    sections = [
        Section("Setup", items=[f"{k}: {v}" for k, v in config.items()]),
        Section("Results (best mean score per task in bold)",
                 headers=["task", "policy", "episodes", "success [95% Wilson CI]",
                          "mean score [95% bootstrap CI]", "errors"], rows=rows),
        Section("Across tasks (mean of per-task values; only policies that ran every task)",
                 headers=["policy", "tasks run", "mean normalised score", "mean success rate"],
                 rows=[[t["policy"], str(t["tasks"]),
                        "–" if t["mean_score"] is None else f"{t['mean_score']:.3f}",
                        "–" if t["success_rate"] is None else f"{100 * t['success_rate']:.1f} %"] for t in totals]),
        *_matrix_sections(config, pairs),
        Section("Every paired test on shared initial states (p raw / Holm-adjusted over every pair and task; "
                "judge significance by the Holm-adjusted p)", collapsed=True,
                 headers=["task", "A vs B", "episodes", "success: only A / only B", "McNemar exact p (Holm)",
                          "score: A higher / B higher", "sign test p (Holm)", "mean score A − B [95% CI]"],
                 rows=[[p["task"], f"{p['a']} vs {p['b']}", str(p["episodes"]),
                        f"{p['success']['only_a']} / {p['success']['only_b']}",
                        f"{p['success']['p_value']:.3g} ({p['success']['p_holm']:.3g})",
                        f"{p['score']['higher_a']} / {p['score']['higher_b']}",
                        f"{p['score']['p_value']:.3g} ({p['score']['p_holm']:.3g})",
                        f"{p['score_difference']:+.3f} [{p['score_difference_ci'][0]:+.3f}, "
                        f"{p['score_difference_ci'][1]:+.3f}]"] for p in pairs]),
        Section("Mean score per task", plot=PLOTS["scores"]),
        Section("Rubric stages", plot=PLOTS["stages"]),
        Section("Latency",
                 headers=["policy", "task", "latency mean / p95 (ms)", "mean steps", "wall seconds"],
                 rows=[[c["policy"], c["task"], f"{c['latency_mean_ms']:.1f} / {c['latency_p95_ms']:.1f}",
                        f"{c['mean_steps']:.0f}", f"{c['wall_seconds']:.0f}"] for c in cells],
                 plot=PLOTS["latency"]),
    ]
    if videos:
        sections.append(Section("Videos (one initial state per row)", videos=videos))
    if not_applicable:
        sections.append(Section("Not applicable", items=[f"{n['policy']} on {n['task']}: {n['reason']}"
                                                          for n in not_applicable]))
    return sections


SCORE_FIGURE_IN = (9.0, 3.6)  # inches, at plots.DPI


def _plot_scores(cells: list[dict], policies: list[str], tasks: list[str]) -> bytes:
    """Grouped bars of mean score per task with bootstrap CI whiskers (the paper's figures);
    the legend outside the bars."""
    fig, axes = figure(*SCORE_FIGURE_IN)
    ax = axes[0, 0]
    by_key = {(c["policy"], c["task"]): c for c in cells}
    width = 0.8 / max(1, len(policies))
    x = np.arange(len(tasks))
    for i, policy in enumerate(policies):
        mine = [by_key.get((policy, t)) for t in tasks]
        means = np.array([c["mean_score"] if c else np.nan for c in mine])
        lo = np.array([c["mean_score"] - c["score_ci"][0] if c else 0 for c in mine])
        hi = np.array([c["score_ci"][1] - c["mean_score"] if c else 0 for c in mine])
        positions = x - 0.4 + width * (i + 0.5)
        ax.bar(positions, np.nan_to_num(means), width, yerr=[lo, hi], capsize=3, label=policy)
        for position, cell in zip(positions, mine):
            if cell is None:
                ax.text(position, 0.02, "n/a", ha="center", fontsize=MIN_FONT_PT, rotation=90)
    ax.set_xticks(x, tasks)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean score (points / max)")
    legend_outside(ax, title="policy")
    return figure_png(fig)


def _task_panels(cells: list[dict], height_in: float = 3.2):
    """(tasks, fig, axes): one panel per task, side by side (small multiples)."""
    tasks = list(dict.fromkeys(c["task"] for c in cells)) or ["(none)"]
    fig, axes = figure(3.6 * len(tasks) + 1.6, height_in, 1, len(tasks))
    return tasks, fig, axes[0]


def _plot_stages(cells: list[dict]) -> bytes:
    """Per task, the share of episodes that reached each rubric stage, one bar per policy:
    how far policies get, not only whether they finish."""
    tasks, fig, axes = _task_panels(cells)
    for ax, task in zip(axes, tasks):
        mine = [c for c in cells if c["task"] == task]
        stages = list(dict.fromkeys(s for c in mine for s in c["stage_rates"]))
        width = 0.8 / max(1, len(mine))
        for i, cell in enumerate(mine):
            ax.bar(np.arange(len(stages)) - 0.4 + width * (i + 0.5),
                   [cell["stage_rates"].get(s, 0.0) for s in stages], width, label=cell["policy"])
        ax.set_xticks(np.arange(len(stages)), [s.replace("_", " ") for s in stages], rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_title(task)
    axes[0].set_ylabel("share of episodes")
    legend_outside(axes[-1], title="policy")
    return figure_png(fig)


def _plot_latency(cells: list[dict]) -> bytes:
    """Per task, each policy's mean time per call (log scale) as labelled bars: what a
    policy costs, where that differs by orders of magnitude."""
    tasks, fig, axes = _task_panels(cells)
    for ax, task in zip(axes, tasks):
        mine = [c for c in cells if c["task"] == task]
        y = np.arange(len(mine))
        ax.barh(y, [max(c["latency_mean_ms"], 1e-3) for c in mine], color="tab:gray")
        ax.set_yticks(y, [c["policy"] for c in mine])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("mean ms per call (log)")
        ax.set_title(task)
    return figure_png(fig)


def write_comparison(out: Path) -> dict:
    """Recompute and write every comparison artefact from the stored episodes."""
    out = Path(out)
    config, episodes, not_applicable = load_comparison(out)
    cells = summarize(episodes) if not episodes.empty else []
    order = {(p, t): i for i, (t, p) in enumerate(itertools.product(config["tasks"], config["policies"]))}
    cells.sort(key=lambda c: order.get((c["policy"], c["task"]), len(order)))
    pairs = pairwise(episodes, config["policies"], config["tasks"]) if cells else []
    totals = aggregate(cells, config["policies"], config["tasks"])
    summary = {"compare": config, "cells": cells, "not_applicable": not_applicable, "pairwise": pairs,
               "aggregate": totals}
    images = {PLOTS["scores"]: _plot_scores(cells, config["policies"], config["tasks"]),
              PLOTS["stages"]: _plot_stages(cells), PLOTS["latency"]: _plot_latency(cells)}
    title = f"pi0bench comparison: {', '.join(config['policies'])} on {', '.join(config['tasks'])}"
    videos = video_rows(out, config)
    sections = _sections(config, cells, not_applicable, pairs, totals, videos)
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=2, default=str) + "\n").encode())
    atomic_write_bytes(out / "summary.csv", summary_csv(cells).encode() if cells else b"")
    atomic_write_bytes(out / "report.md", render_markdown(title, sections).encode())
    atomic_write_bytes(out / "report.html", render_html(title, sections, images).encode())
    for name, data in images.items():
        atomic_write_bytes(out / name, data)
    return summary


def comparison_table(summary: dict) -> Any:
    """The terminal view: one row per cell, n/a cells included."""
    from rich.table import Table

    table = Table(title="Comparison")
    for name in ("task", "policy", "episodes", "success [95% CI]", "score [95% CI]"):
        table.add_column(name)
    for c in summary["cells"]:
        success, score = _cell_text(c, False)
        table.add_row(c["task"], c["policy"], str(c["episodes"]), success, score)
    for n in summary["not_applicable"]:
        table.add_row(n["task"], n["policy"], "–", "n/a", "n/a")
    return table
