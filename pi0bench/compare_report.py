"""The comparison report: what a researcher pastes into a paper or a pull request.

summary.json and summary.csv (one row per policy x task) for machines; report.md (tables with
the best policy of each task in bold) and a self-contained report.html for people; plots in
the paper's style: mean score per task with CI whiskers, per-stage bars, success vs latency.
Everything is recomputed from the stored episodes, so `pi0bench report DIR` rebuilds it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pi0bench.compare_store import cell_dir, load_comparison
from pi0bench.paired import paired_comparison
from pi0bench.plots import figure_png, plt
from pi0bench.report import Section, render_html, render_markdown, summary_csv, write_atomic
from pi0bench.stats import holm, outcomes, summarize
from pi0bench.store import episode_stem

PLOTS = {"scores": "scores.png", "stages": "stages.png", "latency": "latency.png"}


def pairwise(episodes: pd.DataFrame, policies: list[str], tasks: list[str]) -> list[dict]:
    """Paired tests for every two policies on every task both ran, over their shared episodes."""
    rows = []
    for task in tasks:
        for a, b in itertools.combinations(policies, 2):
            ea = episodes[(episodes.policy == a) & (episodes.task == task)].set_index("episode")
            eb = episodes[(episodes.policy == b) & (episodes.task == task)].set_index("episode")
            shared = ea.index.intersection(eb.index)
            if ea.empty or eb.empty or len(shared) == 0:
                continue
            _, success_a, score_a = outcomes(ea.loc[shared])
            _, success_b, score_b = outcomes(eb.loc[shared])
            rows.append({"task": task, "a": a, "b": b, **paired_comparison(success_a, success_b, score_a, score_b)})
    for test in ("success", "score"):  # each test's family: every pair on every task
        for row, adjusted in zip(rows, holm([r[test]["p_value"] for r in rows])):
            row[test]["p_holm"] = adjusted
    return rows


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
    return (f"**{success}**", f"**{score}**") if best else (success, score)


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
        Section("Paired tests on shared initial states (p raw / Holm-adjusted over every pair and task; "
                "judge significance by the Holm-adjusted p)",
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


def _plot_scores(cells: list[dict], policies: list[str], tasks: list[str]) -> bytes:
    """Grouped bars of mean score per task with bootstrap CI whiskers (the paper's figures)."""
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(tasks)), 4))
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
                ax.text(position, 0.02, "n/a", ha="center", fontsize="x-small", rotation=90)
    ax.set_xticks(x, tasks)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean score (points / max)")
    ax.legend(fontsize="small", ncol=min(len(policies), 4))
    return figure_png(fig)


def _plot_stages(cells: list[dict]) -> bytes:
    """Per cell, the rate of each rubric stage, stacked: how far policies get, not only if."""
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(cells) + 2), 4))
    labels = [f"{c['policy']}\n{c['task']}" for c in cells]
    stages = list(dict.fromkeys(s for c in cells for s in c["stage_rates"]))
    bottom = np.zeros(len(cells))
    for stage in stages:
        rates = np.array([c["stage_rates"].get(stage, 0.0) for c in cells])
        ax.bar(labels, rates, bottom=bottom, label=stage)
        bottom += rates
    ax.set_ylabel("sum of stage rates")
    ax.tick_params(axis="x", labelsize="x-small")
    if stages:
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=4, frameon=False)
    return figure_png(fig)


def _plot_latency(cells: list[dict]) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 4))
    for c in cells:
        ax.scatter(max(c["latency_mean_ms"], 1e-3), c["success_rate"], s=40)
        ax.annotate(f"{c['policy']}/{c['task']}", (max(c["latency_mean_ms"], 1e-3), c["success_rate"]),
                    fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("mean policy call latency (ms, log)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.05, 1.05)
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
    media = {**images, **{name: (out / name).read_bytes() for _, row in videos for _, name in row}}
    write_atomic(out / "summary.json", (json.dumps(summary, indent=2, default=str) + "\n").encode())
    write_atomic(out / "summary.csv", summary_csv(cells).encode() if cells else b"")
    write_atomic(out / "report.md", render_markdown(title, sections).encode())
    write_atomic(out / "report.html", render_html(title, sections, media).encode())
    for name, data in images.items():
        write_atomic(out / name, data)
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
