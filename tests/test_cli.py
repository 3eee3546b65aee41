"""The command line through its real entry point: listing, errors, eval, resume, report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import check_run_contract

from pi0bench.registry import POLICIES

PI0BENCH = [sys.executable, "-m", "pi0bench.cli"]


def _run(*args, **kwargs):
    return subprocess.run([*PI0BENCH, *args], capture_output=True, text=True, timeout=600, **kwargs)


def test_tasks_and_policies_are_listed():
    tasks = _run("tasks")
    assert tasks.returncode == 0 and "drawer_tidy" in tasks.stdout
    policies = _run("policies")
    assert policies.returncode == 0
    assert all(name in policies.stdout for name in ("scripted", "random", "hold"))


@pytest.mark.parametrize("args,needle", [
    (["--policy", "nope", "--task", "drawer_tidy"], f"unknown policy 'nope'; choose from: {', '.join(sorted(POLICIES))}"),
    (["--policy", "hold", "--task", "nope"], "unknown task 'nope'; choose from: drawer_tidy, paper_towel_replace, towel_fold"),
    (["--policy", "hold", "--task", "towel_fold", "--cameras", "base"], "unknown camera 'base' for the aloha robot"),
    (["--policy", "scripted", "--task", "towel_fold", "--cameras", "none", "--videos", "1"],
     "--videos needs cameras"),
    (["--policy", "hold", "--task", "drawer_tidy", "--cameras", "top"], "unknown camera 'top'"),
    (["--policy", "hold", "--task", "drawer_tidy", "--episodes", "0"], "--episodes must be at least 1"),
    (["--policy", "act", "--task", "drawer_tidy", "--policy-arg", "beam=3"],
     "policy 'act' has no option 'beam'; its options: temporal_ensemble"),
    (["--policy", "hold", "--task", "drawer_tidy", "--policy-arg", "x"], "--policy-arg 'x' is not NAME=VALUE"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, needle):
    result = _run("eval", *args, "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_missing_checkpoint_fails_before_any_run_directory_exists(tmp_path):
    result = _run("eval", "--policy", "act", "--task", "drawer_tidy", "--checkpoint", str(tmp_path / "nope"),
                  "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and f"no act checkpoint at {tmp_path / 'nope'}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_eval_writes_a_complete_run_and_report_regenerates_it(tmp_path):
    out = tmp_path / "run"
    result = _run("eval", "--policy", "scripted", "--task", "drawer_tidy", "--episodes", "2",
                  "--image-size", "64", "--videos", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "scripted" in result.stdout and "success" in result.stdout
    for name in ("run.json", "summary.json", "report.md", "report.html", "success.png"):
        assert (out / name).is_file(), name
    episodes = pd.read_parquet(out / "episodes")
    assert sorted(episodes.episode) == [0, 1]
    videos = list((out / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 10_000
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["policy"] == "scripted" and run["versions"]["mujoco"] == "3.17.0"
    check_run_contract(out)

    (out / "summary.json").unlink()
    again = _run("report", str(out))
    assert again.returncode == 0 and (out / "summary.json").is_file()
    assert json.loads((out / "summary.json").read_text())["cells"][0]["episodes"] == 2


def test_report_on_a_non_run_directory_is_a_user_error(tmp_path):
    result = _run("report", str(tmp_path))
    assert result.returncode == 2 and "not a run directory" in result.stderr


def test_resume_after_kill_finishes_only_the_missing_episodes(tmp_path):
    out = tmp_path / "run"
    args = ["eval", "--policy", "random", "--task", "drawer_tidy", "--episodes", "6",
            "--image-size", "32", "--out", str(out)]
    proc = subprocess.Popen([*PI0BENCH, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    episodes_dir = out / "episodes"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(episodes_dir.glob("*.parquet"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.read_bytes() for p in episodes_dir.glob("*.parquet")}
    assert 2 <= len(before) < 6

    result = _run(*args)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr
    after = {p.name: p.read_bytes() for p in episodes_dir.glob("*.parquet")}
    assert len(after) == 6
    assert all(after[name] == data for name, data in before.items())  # nothing redone
    episodes = pd.read_parquet(episodes_dir)
    assert sorted(episodes.episode) == list(range(6))
    assert not list(episodes_dir.glob(".*"))  # no temp file left behind
    check_run_contract(out)


def test_resuming_into_a_different_run_is_refused(tmp_path):
    out = tmp_path / "run"
    assert _run("eval", "--policy", "hold", "--task", "drawer_tidy", "--episodes", "1",
                "--image-size", "32", "--out", str(out)).returncode == 0
    clash = _run("eval", "--policy", "random", "--task", "drawer_tidy", "--episodes", "1",
                 "--image-size", "32", "--out", str(out))
    assert clash.returncode == 2 and "holds a different run" in clash.stderr


@pytest.mark.parametrize("command", [
    ["robustness", "--policy", "hold", "--task", "drawer_tidy", "--axes", "light", "--levels", "1",
     "--episodes", "1", "--image-size", "32"],
    ["latency-sweep", "--policy", "hold", "--task", "drawer_tidy", "--latency-ms", "0,100", "--modes", "naive",
     "--episodes", "1", "--cameras", "none"],
    ["eval", "--policy", "random", "--task", "drawer_tidy", "--episodes", "1", "--cameras", "none",
     "--shared-policy", "--max-batch", "2"],
])
def test_every_multi_cell_command_runs_from_the_command_line(tmp_path, command):
    result = _run(*command, "--out", str(tmp_path / "out"), env={**os.environ, "MUJOCO_GL": "egl"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "report.md").is_file()
