"""Run reports: summary.json for machines, report.md / report.html / success.png for people.

Every file is written atomically (temp file in the same directory, then os.replace), so a run
directory never holds a half-written report, even if the process dies mid-write.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from pi0bench.plots import figure, figure_png, legend_outside
from pi0bench.stats import summarize, summarize_cell
from pi0bench.store import atomic_write_bytes

_MAX_LISTED_ERRORS = 20
_MAX_ERROR_CHARS = 500
_PLOT_NAME = "success.png"
RUN_FIGURE_IN = (12.0, 4.5)


class Strong(str):
    """A table cell shown in bold (Markdown **…**, HTML <strong>), never as literal markers."""


@dataclass(frozen=True)
class Shaded:
    """A table cell with a background colour in HTML (Markdown shows the text alone)."""

    text: str
    colour: str  # any CSS colour

    def __str__(self) -> str:
        return self.text


Cell = str | Strong | Shaded


@dataclass(frozen=True)
class Section:
    """One report section, rendered identically to Markdown and HTML."""

    title: str
    headers: list[str] = field(default_factory=list)
    rows: list[list[Cell]] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    collapsed: bool = False  # HTML: the table folded under its title (<details>)
    note: str = ""  # a sentence shown above the table
    plot: str = ""  # file name of a PNG shown in this section
    # (caption, [(label, video file)]) rows of videos shown side by side
    videos: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)


def _label(cell: dict[str, Any]) -> str:
    return f"{cell['policy']}/{cell['task']}"


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f} %"


def _success_text(cell: dict[str, Any]) -> str:
    lo, hi = cell["success_ci"]
    return f"{_pct(cell['success_rate'])} [{100.0 * lo:.1f}, {100.0 * hi:.1f}]"


def _score_text(cell: dict[str, Any]) -> str:
    lo, hi = cell["score_ci"]
    return f"{cell['mean_score']:.3f} [{lo:.3f}, {hi:.3f}]"


def _latency_text(cell: dict[str, Any]) -> str:
    return f"{cell['latency_mean_ms']:.1f} / {cell['latency_p95_ms']:.1f}"


def _stage_names(cells: list[dict[str, Any]]) -> list[str]:
    """Union of the cells' stages, keeping rubric order (first seen first)."""
    return list(dict.fromkeys(stage for cell in cells for stage in cell["stage_rates"]))


def _title(run_config: dict[str, Any], cells: list[dict[str, Any]]) -> str:
    """Name the run by what the config says, falling back to what the records contain."""
    policy = run_config.get("policy") or ", ".join(dict.fromkeys(c["policy"] for c in cells))
    task = run_config.get("task") or ", ".join(dict.fromkeys(c["task"] for c in cells))
    return f"pi0bench report: {policy} on {task}"


def _error_items(episodes: pd.DataFrame) -> list[str]:
    """First few crashes, one line each, so a traceback cannot swamp the report.

    Long texts keep their end: in a traceback that is where the exception itself is.
    """
    errors = episodes[episodes["error"].fillna("").astype(str) != ""]
    items = []
    for row in errors.head(_MAX_LISTED_ERRORS).itertuples(index=False):
        text = " ".join(str(row.error).split())
        if len(text) > _MAX_ERROR_CHARS:
            text = "…" + text[-(_MAX_ERROR_CHARS - 1):]
        items.append(f"{row.policy}/{row.task} episode {row.episode}: {text}")
    if len(errors) > _MAX_LISTED_ERRORS:
        items.append(f"... and {len(errors) - _MAX_LISTED_ERRORS} more")
    return items


def _sections(summary: dict[str, Any], error_items: list[str]) -> list[Section]:
    """The report's content, independent of the format it is rendered to."""
    cells = summary["cells"]
    stages = _stage_names(cells)
    sections = [
        Section("Run", items=[f"{key}: {value}" for key, value in summary["run"].items()]),
        Section(
            "Results",
            headers=["policy", "task", "episodes", "success [95% CI]", "mean score [95% CI]",
                     "errors"],
            rows=[
                [c["policy"], c["task"], str(c["episodes"]), _success_text(c), _score_text(c),
                 str(c["errors"])]
                for c in cells
            ],
        ),
        Section(
            "Stages",
            headers=["stage", *(_label(c) for c in cells)],
            rows=[
                [stage, *(_pct(c["stage_rates"][stage]) if stage in c["stage_rates"] else "–"
                          for c in cells)]
                for stage in stages
            ],
        ),
        Section(
            "Timing",
            headers=["cell", "mean steps", "latency mean / p95 (ms)", "wall seconds (total)"],
            rows=[
                [_label(c), f"{c['mean_steps']:.1f}", _latency_text(c), f"{c['wall_seconds']:.1f}"]
                for c in cells
            ],
        ),
        Section("Plot", plot=_PLOT_NAME),
    ]
    if error_items:
        sections.append(Section("Errors", items=error_items))
    return sections


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_cell(cell: Cell) -> str:
    text = _md_escape(str(cell))
    return f"**{text}**" if isinstance(cell, Strong) else text


def _html_cell(cell: Cell) -> str:
    text = html.escape(str(cell))
    if isinstance(cell, Strong):
        return f"<td><strong>{text}</strong></td>"
    if isinstance(cell, Shaded):
        return f'<td style="background:{html.escape(cell.colour)}">{text}</td>'
    return f"<td>{text}</td>"


def render_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.note:
            lines += [section.note, ""]
        if section.headers:
            lines.append("| " + " | ".join(map(_md_escape, section.headers)) + " |")
            lines.append("|" + "---|" * len(section.headers))
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in section.rows]
            if section.items:
                lines.append("")  # a list straight after a table would be read as a table row
        lines += [f"- {item}" for item in section.items]
        if section.plot:
            lines.append(f"![{section.title}]({section.plot})")
        lines += [f"- {caption}: " + " · ".join(f"[{label}]({name})" for label, name in row)
                  for caption, row in section.videos]
        lines.append("")
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:.5em 0}"
    "th,td{border:1px solid #ccc;padding:.3em .7em;text-align:left}th{background:#f3f3f3}"
    "img{max-width:100%}li{font-family:ui-monospace,monospace;font-size:.9em}"
)


def render_html(title: str, sections: list[Section], media: dict[str, bytes]) -> str:
    """One page: the PNGs named by sections are embedded; videos are linked by their path
    relative to the page, because a comparison's films (tens of MB) would otherwise be
    stored twice and make the page slow to open."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        if section.note:
            parts.append(f"<p>{esc(section.note)}</p>")
        if section.headers:
            table = ("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in section.headers) + "</tr>"
                     + "".join("<tr>" + "".join(map(_html_cell, row)) + "</tr>" for row in section.rows)
                     + "</table>")
            parts.append(f"<details><summary>{len(section.rows)} rows</summary>{table}</details>"
                         if section.collapsed else table)
        if section.items:
            parts.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in section.items) + "</ul>")
        if section.plot:
            data = base64.b64encode(media[section.plot]).decode("ascii")
            parts.append(f'<img alt="{esc(section.title)}" src="data:image/png;base64,{data}">')
        for caption, row in section.videos:
            figures = "".join(
                f'<figure><video controls muted preload="metadata" width="320" src="{esc(name)}">'
                f"</video><figcaption>{esc(label)}</figcaption></figure>" for label, name in row)
            parts.append(f'<p>{esc(caption)}</p><div style="display:flex;flex-wrap:wrap;gap:1em">'
                         f"{figures}</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _plot_success(ax, cells: list[dict[str, Any]]) -> None:
    """Success rate per cell with asymmetric Wilson error bars."""
    x = np.arange(len(cells))
    rates = np.array([c["success_rate"] for c in cells])
    lo = np.array([c["success_ci"][0] for c in cells])
    hi = np.array([c["success_ci"][1] for c in cells])
    ax.bar(x, rates, yerr=[rates - lo, hi - rates], capsize=6, color="tab:blue", alpha=0.8)
    ax.set_xticks(x, [_label(c) for c in cells], rotation=20, ha="right")
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("success rate")
    ax.set_title("Success (95% Wilson CI)")


def _plot_stages(ax, cells: list[dict[str, Any]]) -> None:
    """Per-stage rates, one bar per cell within each stage's group."""
    stages = _stage_names(cells)
    ax.set_title("Stage rates")
    ax.set_ylim(0.0, 1.0)
    if not stages:
        ax.text(0.5, 0.5, "no stage data", ha="center", va="center", transform=ax.transAxes)
        return
    x = np.arange(len(stages))
    width = 0.8 / len(cells)
    for i, cell in enumerate(cells):
        rates = [cell["stage_rates"].get(stage, 0.0) for stage in stages]
        ax.bar(x - 0.4 + width * (i + 0.5), rates, width, label=_label(cell))
    ax.set_xticks(x, stages, rotation=20, ha="right")
    ax.set_ylabel("fraction of episodes")
    legend_outside(ax)  # right of the axes: bars reach 1.0, so any spot inside could hide one


def _plot_png(cells: list[dict[str, Any]]) -> bytes:
    """Render the two-panel figure to PNG bytes (written to disk and embedded in the HTML)."""
    fig, axes = figure(*RUN_FIGURE_IN, 1, 2)
    _plot_success(axes[0, 0], cells)
    _plot_stages(axes[0, 1], cells)
    return figure_png(fig)


def latency_effect(run_dir: Path, episodes: pd.DataFrame) -> dict | None:
    """A real-time run against its baseline/ (the same episodes without latency), paired by
    episode index; None until both have episodes in common."""
    from pi0bench.paired import paired_episodes, shared_episodes
    from pi0bench.store import RunStore

    baseline_dir = Path(run_dir) / "baseline"
    baseline = RunStore(baseline_dir).load() if (baseline_dir / "episodes").is_dir() else pd.DataFrame()
    if baseline.empty or episodes.empty:
        return None
    late, plain = shared_episodes(episodes, baseline)
    if late.empty:
        return None
    return {"episodes": len(late), "without_latency": summarize_cell(plain), "with_latency": summarize_cell(late),
            "waiting_fraction": float((late["delay_steps"] / late["steps"].clip(lower=1)).mean()),
            "paired": paired_episodes(late, plain)}


def _latency_section(effect: dict, realtime: dict) -> Section:
    if realtime.get("latency_ms") is None:
        how = "measured per call (not exactly reproducible)"
    else:
        how = f"fixed {realtime['latency_ms']:g} ms" + (f" ± {realtime['jitter_ms']:g} ms (seeded)"
                                                       if realtime.get("jitter_ms") else "")
    how += f", {realtime.get('mode', 'naive')} execution"
    rows = [[name, how if key == "with_latency" else "none", str(cell["episodes"]), _success_text(cell),
             _score_text(cell), f"{cell['latency_mean_ms']:.1f}"]
            for name, key in (("without latency", "without_latency"), ("with latency", "with_latency"))
            for cell in [effect[key]]]
    paired = effect["paired"]
    return Section(
        "Latency (real-time mode)",
        headers=["condition", "latency", "episodes", "success [95% CI]", "mean score [95% CI]",
                 "policy call mean (ms)"],
        rows=rows,
        items=[f"same initial states, paired by episode: success lost in {paired['success']['only_b']} and "
               f"gained in {paired['success']['only_a']} episodes (McNemar exact p = "
               f"{paired['success']['p_value']:.3g}); score difference {paired['score_difference']:+.3f} "
               f"[{paired['score_difference_ci'][0]:+.3f}, {paired['score_difference_ci'][1]:+.3f}]",
               f"control steps spent waiting on the policy: {100 * effect['waiting_fraction']:.1f} % "
               "of each episode"],
    )


def write_report(run_dir: Path, run_config: dict, episodes: pd.DataFrame) -> dict:
    """Summarize the episodes and write summary.json, report.md, report.html and success.png."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cells = summarize(episodes)
    summary = {"run": run_config, "cells": cells}
    title = _title(run_config, cells)
    sections = _sections(summary, _error_items(episodes))
    effect = latency_effect(run_dir, episodes) if run_config.get("realtime") else None
    if effect:
        summary["realtime"] = effect
        sections.insert(2, _latency_section(effect, run_config["realtime"]))
    png = _plot_png(cells)
    # default=str: configs may carry Paths and the like; the record should not fail on them.
    atomic_write_bytes(run_dir / "summary.json", (json.dumps(summary, indent=2, default=str) + "\n").encode())
    atomic_write_bytes(run_dir / "summary.csv", summary_csv(cells).encode())
    atomic_write_bytes(run_dir / "report.md", render_markdown(title, sections).encode())
    atomic_write_bytes(run_dir / "report.html", render_html(title, sections, {_PLOT_NAME: png}).encode())
    atomic_write_bytes(run_dir / _PLOT_NAME, png)
    return summary


def summary_csv(cells: list[dict[str, Any]]) -> str:
    """One row per (policy, task), flat columns for pandas: intervals split into low/high,
    stage rates as stage:<name> columns."""
    rows = []
    for c in cells:
        row = {k: v for k, v in c.items() if k not in ("success_ci", "score_ci", "stage_rates")}
        row["success_ci_low"], row["success_ci_high"] = c["success_ci"]
        row["score_ci_low"], row["score_ci_high"] = c["score_ci"]
        row.update({f"stage:{name}": rate for name, rate in c["stage_rates"].items()})
        rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False)


def results_table(summary: dict) -> Table:
    """The results at a glance for the terminal, one row per (policy, task)."""
    table = Table(title="Results")
    for name in ("policy", "task", "episodes", "success [95% CI]", "score [95% CI]", "errors",
                 "latency mean / p95 (ms)"):
        table.add_column(name, justify="left" if name in ("policy", "task") else "right")
    for c in summary["cells"]:
        table.add_row(c["policy"], c["task"], str(c["episodes"]), _success_text(c),
                      _score_text(c), str(c["errors"]), _latency_text(c))
    return table
