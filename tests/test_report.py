"""write_report's files and results_table on a small synthetic run of two cells."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from rich.table import Table

from pi0bench.report import results_table, write_report

_ERROR = "RuntimeError: physics <diverged> & stopped"
_CELL_FIELDS = {
    "policy", "task", "episodes", "successes", "success_rate", "success_ci", "mean_score",
    "score_ci", "stage_rates", "errors", "mean_steps", "latency_mean_ms", "latency_p95_ms", "latency_pooled",
    "wall_seconds",
}


def _row(policy: str, episode: int, opened: float, stored: float, error: str = "") -> dict:
    stages = {} if error else {"drawer_opened": opened, "cube_stored": stored}
    points = opened + stored if not error else 0.0
    return {
        "task": "drawer_tidy", "policy": policy, "seed": 0, "episode": episode,
        "episode_seed": episode, "success": points == 2.0, "score": points / 2.0,
        "points": points, "max_points": 2.0, "stages": json.dumps(stages), "steps": 120,
        "sim_seconds": 6.0, "wall_seconds": 1.5, "latency_mean_ms": 4.0,
        "latency_p95_ms": 6.0, "error": error,
    }


@pytest.fixture
def episodes() -> pd.DataFrame:
    """scripted: 7/10 successes. random: 0/4 with one crash at episode 2."""
    scripted = [_row("scripted", i, 1.0, 1.0 if i < 7 else 0.0) for i in range(10)]
    baseline = [_row("random", i, 1.0 if i == 0 else 0.0, 0.0) for i in range(4)]
    baseline[2] = _row("random", 2, 0.0, 0.0, error=_ERROR)
    return pd.DataFrame(scripted + baseline)


@pytest.fixture
def run_config() -> dict:
    return {"policy": "scripted,random", "task": "drawer_tidy", "episodes": 10, "seed": 0,
            "out": Path("/tmp/run")}


def test_write_report_files(tmp_path: Path, run_config: dict, episodes: pd.DataFrame) -> None:
    write_report(tmp_path, run_config, episodes)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"summary.json", "summary.csv", "report.md", "report.html", "success.png"}  # no temp files
    assert (tmp_path / "success.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_summary_json(tmp_path: Path, run_config: dict, episodes: pd.DataFrame) -> None:
    returned = write_report(tmp_path, run_config, episodes)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["run"]["episodes"] == 10
    assert [(c["policy"], c["task"]) for c in summary["cells"]] == [
        ("scripted", "drawer_tidy"), ("random", "drawer_tidy")]
    for cell in summary["cells"]:
        assert set(cell) == _CELL_FIELDS
    scripted, baseline = summary["cells"]
    assert (scripted["successes"], scripted["errors"]) == (7, 0)
    assert (baseline["episodes"], baseline["errors"]) == (4, 1)
    assert baseline["stage_rates"] == {"drawer_opened": 0.25, "cube_stored": 0.0}
    assert returned["cells"] == summary["cells"]


def test_report_markdown(tmp_path: Path, run_config: dict, episodes: pd.DataFrame) -> None:
    write_report(tmp_path, run_config, episodes)
    md = (tmp_path / "report.md").read_text()
    assert "scripted,random on drawer_tidy" in md
    assert "70.0 % [39.7, 89.2]" in md
    assert "| drawer_opened | 100.0 % | 25.0 % |" in md
    assert f"random/drawer_tidy episode 2: {_ERROR}" in md


def test_report_html(tmp_path: Path, run_config: dict, episodes: pd.DataFrame) -> None:
    write_report(tmp_path, run_config, episodes)
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "70.0 % [39.7, 89.2]" in page
    assert "physics &lt;diverged&gt; &amp; stopped" in page
    assert "<diverged>" not in page
    assert 'src="data:image/png;base64,iVBORw0KGgo' in page


def test_report_without_errors_has_no_error_section(
    tmp_path: Path, run_config: dict, episodes: pd.DataFrame
) -> None:
    write_report(tmp_path, run_config, episodes[episodes["error"] == ""])
    assert "## Errors" not in (tmp_path / "report.md").read_text()


def test_results_table(tmp_path: Path, run_config: dict, episodes: pd.DataFrame) -> None:
    table = results_table(write_report(tmp_path, run_config, episodes))
    assert isinstance(table, Table)
    assert table.row_count == 2
    assert [column.header for column in table.columns][:3] == ["policy", "task", "episodes"]
