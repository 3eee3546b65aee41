"""Real-time evaluation: simulated time runs on while the policy thinks."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from pi0bench.errors import UserError
from pi0bench.evaluate import EvalConfig, evaluate
from pi0bench.envs.task_env import TaskEnv
from pi0bench.rollout import delay_steps, run_episode

SAME = ["episode_seed", "success", "score", "points", "stages", "steps", "sim_seconds", "error"]


def test_delay_is_a_whole_number_of_control_steps_rounded_up():
    assert delay_steps(0.0, 50) == 0
    assert delay_steps(73.0, 50) == 4  # π0's 73 ms on an RTX 4090 at ALOHA's 50 Hz
    assert delay_steps(50.0, 20) == 1 and delay_steps(100.0, 20) == 2  # exact multiples stay exact
    assert delay_steps(50.1, 20) == 2


class _CountingChunks:
    """Chunks of 5 distinct rows around the start pose; the loop executes the first 2."""

    execute_steps = 2

    def __init__(self, start: np.ndarray):
        self.metadata = {"name": "counting", "version": "1", "checkpoint": ""}
        self.start, self.calls = start, 0

    def reset(self, task: str, seed: int) -> None:
        self.calls = 0

    def act(self, obs: dict) -> np.ndarray:
        self.calls += 1
        rows = [self.start.copy() for _ in range(5)]
        for i, row in enumerate(rows):
            row[0] += 0.001 * (10 * self.calls + i)  # call c, row i -> waist offset (10c + i) mrad
        return np.stack(rows)


def test_the_robot_finishes_the_previous_chunk_then_holds_while_the_policy_thinks(monkeypatch):
    env = TaskEnv("drawer_tidy", cameras=())
    env.max_steps = 20  # one second at 20 Hz
    start = env.robot.home.copy()
    sent = []
    real_advance = env.advance
    monkeypatch.setattr(env, "advance", lambda action: (sent.append(np.asarray(action).copy()), real_advance(action))[1])
    record = run_episode(env, _CountingChunks(start), task="drawer_tidy", policy_name="counting", seed=0,
                         episode=0, realtime=True, latency_ms=250.0)  # 5 control steps at 20 Hz
    offsets = [round((a[0] - start[0]) * 1000) for a in sent]
    # call 1: 5 steps holding the start pose, then rows 0-1 of chunk 1 (10, 11); call 2: rows
    # 2-4 of chunk 1 while it thinks, then the last of them held, then rows 0-1 of chunk 2 ...
    assert offsets == [0, 0, 0, 0, 0, 10, 11, 12, 13, 14, 14, 14, 20, 21, 22, 23, 24, 24, 24, 30]
    assert record.delay_steps == 15 and record.steps == 20
    env.close()


class _Slow(_CountingChunks):
    """Thinks for 60 ms a call: 2 control steps at 20 Hz when the latency is measured."""

    def act(self, obs: dict) -> np.ndarray:
        time.sleep(0.06)
        return super().act(obs)


def test_measured_latency_advances_the_world_by_what_the_call_took():
    env = TaskEnv("drawer_tidy", cameras=())
    env.max_steps = 20
    policy = _Slow(env.robot.home.copy())
    record = run_episode(env, policy, task="drawer_tidy", policy_name="slow", seed=0, episode=0, realtime=True)
    # every call costs at least 2 steps of waiting (the last may be cut short by the episode end)
    assert record.delay_steps >= 2 * (policy.calls - 1) + 1 and record.latency_mean_ms >= 60.0
    env.close()


def _eval(tmp_path, name, **kwargs) -> pd.DataFrame:
    evaluate(EvalConfig(policy="scripted", task="drawer_tidy", episodes=1, cameras=(), out=tmp_path / name, **kwargs))
    return pd.read_parquet(tmp_path / name / "episodes")


def test_zero_latency_is_exactly_the_normal_mode(tmp_path):
    normal = _eval(tmp_path, "normal")
    zero = _eval(tmp_path, "zero", realtime=True, latency_ms=0.0)
    pd.testing.assert_frame_equal(normal[SAME], zero[SAME])
    assert normal["success"].all() and (zero["delay_steps"] == 0).all()


def test_a_large_latency_costs_the_expert_its_success_and_the_report_shows_both(tmp_path):
    late = _eval(tmp_path, "late", realtime=True, latency_ms=400.0, workers=1)
    baseline = pd.read_parquet(tmp_path / "late" / "baseline" / "episodes")
    assert baseline["success"].all() and baseline["score"].iloc[0] == 1.0
    assert late["score"].iloc[0] < baseline["score"].iloc[0] and not late["success"].any()
    waited, executed = int(late["delay_steps"].iloc[0]), int(late["steps"].iloc[0] - late["delay_steps"].iloc[0])
    assert waited % 8 == 0 and waited // 8 in (executed, executed + 1)  # 8 steps per 1-step call
    summary = json.loads((tmp_path / "late" / "summary.json").read_text())
    effect = summary["realtime"]
    assert effect["without_latency"]["success_rate"] == 1.0 and effect["with_latency"]["success_rate"] == 0.0
    run = json.loads((tmp_path / "late" / "run.json").read_text())
    assert run["config"]["realtime"] == {"latency_ms": 400.0, "latency": "fixed", "reproducible": True}
    report = (tmp_path / "late" / "report.md").read_text()
    assert "Latency (real-time mode)" in report and "fixed 400 ms" in report
    again = _eval(tmp_path, "late-again", realtime=True, latency_ms=400.0)  # fixed latency replays
    pd.testing.assert_frame_equal(late[SAME], again[SAME])


def test_measured_latency_is_marked_not_reproducible(tmp_path):
    config = EvalConfig(policy="hold", task="drawer_tidy", episodes=1, cameras=(), realtime=True,
                        out=tmp_path / "measured")
    evaluate(config)
    run = json.loads((tmp_path / "measured" / "run.json").read_text())
    assert run["config"]["realtime"]["reproducible"] is False
    assert EvalConfig(policy="hold", task="drawer_tidy", realtime=True).run_dir.name.endswith("realtime-measured")


def test_bad_latency_settings_are_refused():
    for config in (EvalConfig(policy="hold", task="drawer_tidy", latency_ms=50.0),
                   EvalConfig(policy="hold", task="drawer_tidy", realtime=True, latency_ms=-1.0)):
        with pytest.raises(UserError, match="--latency-ms"):
            config.validate()
