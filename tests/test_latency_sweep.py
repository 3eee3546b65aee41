"""`pi0bench latency-sweep`: every (mode, latency) cell on the same initial states, paired
tests against naive, n/a modes with their reason, and resuming after kill -9."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from pi0bench.errors import UserError
from pi0bench.latency_sweep import SweepConfig, latency_sweep

PI0BENCH = [sys.executable, "-m", "pi0bench.cli"]


def test_a_sweep_pairs_every_mode_with_naive_on_the_same_starts(tmp_path, tiny_pi0_checkpoint):
    config = SweepConfig(policy="pi0", task="drawer_tidy", out=tmp_path / "sweep", latencies_ms=(0.0, 100.0),
                         episodes=2, image_size=16, checkpoint=str(tiny_pi0_checkpoint))
    summary = latency_sweep(config)
    cells = pd.read_csv(tmp_path / "sweep" / "summary.csv")
    assert list(zip(cells["mode"], cells["latency_ms"])) == [("all", 0), ("naive", 100), ("skip", 100), ("rtc", 100)]
    for column in ("success_rate", "success_ci_low", "success_ci_high", "mean_score", "score_ci_low",
                   "score_ci_high", "mean_success_seconds", "waiting_share"):
        assert column in cells
    assert cells["waiting_share"].iloc[0] == 0 and (cells["waiting_share"].iloc[1:] > 0).all()
    seeds = [pd.read_parquet(d / "episodes").sort_values("episode")["episode_seed"].tolist()
             for d in sorted((tmp_path / "sweep" / "cells").iterdir())]
    assert len(seeds) == 4 and all(s == seeds[0] for s in seeds)
    paired = {(p["mode"], p["latency_ms"]) for p in summary["paired_vs_naive"]}
    assert paired == {("skip", 100.0), ("rtc", 100.0)}
    assert all("p_holm" in p["success"] for p in summary["paired_vs_naive"])
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "against naive" in report and "**" not in report
    assert (tmp_path / "sweep" / "latency_sweep.png").read_bytes()[:4] == b"\x89PNG"
    rtc = json.loads((tmp_path / "sweep" / "cells" / "rtc-100ms" / "run.json").read_text())
    assert rtc["config"]["realtime"]["mode"] == "rtc"


def test_rtc_is_not_applicable_to_a_policy_without_flow_matching(tmp_path):
    summary = latency_sweep(SweepConfig(policy="scripted", task="drawer_tidy", out=tmp_path / "s",
                                        latencies_ms=(150.0,), episodes=1, cameras=()))
    assert [c["mode"] for c in summary["cells"]] == ["naive", "skip"]
    assert "flow-matching" in summary["not_applicable"]["rtc"]
    assert "rtc: --realtime-mode rtc needs" in (tmp_path / "s" / "report.md").read_text()


def test_bad_sweep_settings_are_one_line_errors(tmp_path):
    for kwargs, message in ((dict(modes=("fast",)), "unknown --realtime-mode"),
                            (dict(latencies_ms=(-5.0,)), "--latency-ms"),
                            (dict(policy="nope"), "unknown policy")):
        config = SweepConfig(**{"policy": "hold", "task": "drawer_tidy", "out": tmp_path, **kwargs})
        with pytest.raises(UserError, match=message):
            config.validate()
    bad = subprocess.run([*PI0BENCH, "latency-sweep", "--policy", "hold", "--task", "drawer_tidy",
                          "--latency-ms", "0,fast", "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and "comma-separated numbers" in bad.stderr


@pytest.mark.slow  # 15 episodes in subprocesses: in `make test-slow` and .ci/run
def test_a_sweep_resumes_after_kill_9_keeping_every_finished_episode(tmp_path):
    out = tmp_path / "sweep"
    args = ["latency-sweep", "--policy", "random", "--task", "drawer_tidy", "--latency-ms", "0,100,200",
            "--modes", "naive,skip", "--episodes", "3", "--cameras", "none", "--out", str(out)]
    proc = subprocess.Popen([*PI0BENCH, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.glob("cells/*/episodes/*.parquet"))) < 4:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p: p.read_bytes() for p in out.glob("cells/*/episodes/*.parquet")}
    assert 4 <= len(before) < 15
    result = subprocess.run([*PI0BENCH, *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    after = {p: p.read_bytes() for p in out.glob("cells/*/episodes/*.parquet")}
    assert len(after) == 15 and all(after[p] == data for p, data in before.items())
    assert len(pd.read_csv(out / "summary.csv")) == 5
