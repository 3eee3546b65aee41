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
from pi0bench.realtime import Realtime, delay_steps
from pi0bench.rollout import run_episode

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
                         episode=0, realtime=Realtime(latency_ms=250.0))  # 5 control steps at 20 Hz
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
    record = run_episode(env, policy, task="drawer_tidy", policy_name="slow", seed=0, episode=0, realtime=Realtime())
    # every call costs at least 2 steps of waiting (the last may be cut short by the episode end)
    assert record.delay_steps >= 2 * (policy.calls - 1) + 1 and record.latency_mean_ms >= 60.0
    env.close()


def _eval(tmp_path, name, **kwargs) -> pd.DataFrame:
    evaluate(EvalConfig(policy="scripted", task="drawer_tidy", episodes=1, cameras=(), out=tmp_path / name, **kwargs))
    return pd.read_parquet(tmp_path / name / "episodes")


def test_zero_latency_is_exactly_the_normal_mode(tmp_path):
    normal = _eval(tmp_path, "normal")
    zero = _eval(tmp_path, "zero", realtime=Realtime(latency_ms=0.0))
    pd.testing.assert_frame_equal(normal[SAME], zero[SAME])
    assert normal["success"].all() and (zero["delay_steps"] == 0).all()


def test_a_large_latency_costs_the_expert_its_success_and_the_report_shows_both(tmp_path):
    late = _eval(tmp_path, "late", realtime=Realtime(latency_ms=400.0), workers=1)
    baseline = pd.read_parquet(tmp_path / "late" / "baseline" / "episodes")
    assert baseline["success"].all() and baseline["score"].iloc[0] == 1.0
    assert late["score"].iloc[0] < baseline["score"].iloc[0] and not late["success"].any()
    waited, executed = int(late["delay_steps"].iloc[0]), int(late["steps"].iloc[0] - late["delay_steps"].iloc[0])
    assert waited % 8 == 0 and waited // 8 in (executed, executed + 1)  # 8 steps per 1-step call
    summary = json.loads((tmp_path / "late" / "summary.json").read_text())
    effect = summary["realtime"]
    assert effect["without_latency"]["success_rate"] == 1.0 and effect["with_latency"]["success_rate"] == 0.0
    run = json.loads((tmp_path / "late" / "run.json").read_text())
    assert run["config"]["realtime"] == {"mode": "naive", "latency_ms": 400.0, "jitter_ms": 0.0,
                                         "latency": "fixed", "reproducible": True}
    report = (tmp_path / "late" / "report.md").read_text()
    assert "Latency (real-time mode)" in report and "fixed 400 ms" in report
    again = _eval(tmp_path, "late-again", realtime=Realtime(latency_ms=400.0))  # fixed latency replays
    pd.testing.assert_frame_equal(late[SAME], again[SAME])


def test_measured_latency_is_marked_not_reproducible(tmp_path):
    config = EvalConfig(policy="hold", task="drawer_tidy", episodes=1, cameras=(), realtime=Realtime(),
                        out=tmp_path / "measured")
    evaluate(config)
    run = json.loads((tmp_path / "measured" / "run.json").read_text())
    assert run["config"]["realtime"]["reproducible"] is False
    assert EvalConfig(policy="hold", task="drawer_tidy", realtime=Realtime()).run_dir.name.endswith("realtime-measured")


def test_bad_realtime_settings_are_one_line_errors():
    cases = [(Realtime(latency_ms=-1.0), "--latency-ms"), (Realtime(latency_ms=50.0, jitter_ms=-1.0), "jitter"),
             (Realtime(jitter_ms=10.0), "comes with --latency-ms"), (Realtime(mode="fast"), "unknown --realtime-mode")]
    for realtime, message in cases:
        with pytest.raises(UserError, match=message) as caught:
            EvalConfig(policy="hold", task="drawer_tidy", realtime=realtime).validate()
        assert "\n" not in str(caught.value)


def test_rtc_on_a_policy_without_flow_matching_is_a_one_line_error():
    for policy in ("act", "dp", "scripted"):
        with pytest.raises(UserError, match="needs a flow-matching policy") as caught:
            EvalConfig(policy=policy, task="drawer_tidy", realtime=Realtime(mode="rtc", latency_ms=50.0)).validate()
        assert "\n" not in str(caught.value) and "use --realtime-mode naive or skip" in str(caught.value)
    EvalConfig(policy="pi0", task="drawer_tidy", realtime=Realtime(mode="rtc", latency_ms=50.0)).validate()
    # a policy that reaches the loop without act_guided ends its episode as an error record
    env = TaskEnv("drawer_tidy", cameras=())
    record = run_episode(env, _CountingChunks(env.robot.home.copy()), task="drawer_tidy", policy_name="counting",
                         seed=0, episode=0, realtime=Realtime(mode="rtc", latency_ms=50.0))
    assert "cannot inpaint" in record.error and record.steps == 0
    env.close()


def _sent_actions(env, policy, monkeypatch, **kwargs) -> tuple[list[int], object]:
    """The waist offsets (mrad) the loop sends for _CountingChunks-style policies, and the record."""
    sent = []
    real_advance = env.advance
    monkeypatch.setattr(env, "advance", lambda action: (sent.append(np.asarray(action).copy()), real_advance(action))[1])
    record = run_episode(env, policy, task="drawer_tidy", policy_name="counting", seed=0, **kwargs)
    monkeypatch.setattr(env, "advance", real_advance)
    return [round((a[0] - policy.start[0]) * 1000) for a in sent], record


def test_skip_drops_exactly_the_rows_that_went_stale(monkeypatch):
    env = TaskEnv("drawer_tidy", cameras=())
    env.max_steps = 20
    policy = _CountingChunks(env.robot.home.copy())
    naive, _ = _sent_actions(env, policy, monkeypatch, episode=0, realtime=Realtime(latency_ms=100.0))
    skip, record = _sent_actions(env, policy, monkeypatch, episode=0, realtime=Realtime(mode="skip", latency_ms=100.0))
    # 100 ms at 20 Hz is d = 2 steps, in which the previous chunk's unexecuted rows play (the
    # last held when they run out); naive then starts chunk c at row 0 (10c), skip at row 2
    assert naive == [0, 0, 10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33, 40, 41, 42, 43, 50, 51]
    assert skip == [0, 0, 12, 13, 14, 14, 22, 23, 24, 24, 32, 33, 34, 34, 42, 43, 44, 44, 52, 53]
    assert record.delay_steps == 10
    # a delay longer than the chunk leaves only its last row to play
    late, _ = _sent_actions(env, policy, monkeypatch, episode=0, realtime=Realtime(mode="skip", latency_ms=400.0))
    assert late[:9] == [0] * 8 + [14]
    env.close()


def test_jittered_latency_replays_exactly_from_the_episode_seed(monkeypatch):
    realtime = Realtime(latency_ms=100.0, jitter_ms=60.0)
    draws = [realtime.latency_source(7)(0.0) for _ in range(2)]
    source = realtime.latency_source(7)
    sequence = [source(0.0) for _ in range(200)]
    assert sequence[0] == draws[0] == draws[1] != sequence[1]  # a fresh source restarts the draws
    assert min(sequence) >= 0.0 and len(set(sequence)) > 150
    assert abs(np.mean(sequence) - 100.0) < 15.0 and 40.0 < np.std(sequence) < 80.0
    assert [realtime.latency_source(8)(0.0) for _ in range(3)] != sequence[:3]
    env = TaskEnv("drawer_tidy", cameras=())
    env.max_steps = 40
    policy = _CountingChunks(env.robot.home.copy())
    first, a = _sent_actions(env, policy, monkeypatch, episode=0, realtime=realtime)
    again, b = _sent_actions(env, policy, monkeypatch, episode=0, realtime=realtime)
    other, _ = _sent_actions(env, policy, monkeypatch, episode=1, realtime=realtime)
    fixed, _ = _sent_actions(env, policy, monkeypatch, episode=0, realtime=Realtime(latency_ms=100.0))
    assert first == again and a.delay_steps == b.delay_steps and a.final_state_sha == b.final_state_sha
    assert first != other and first != fixed
    env.close()


class _Guidable(_CountingChunks):
    """Records what real-time chunking asks of it."""

    def reset(self, task: str, seed: int) -> None:
        super().reset(task, seed)
        self.guided: list[tuple[np.ndarray, int]] = []

    def act_guided(self, obs: dict, previous: np.ndarray, delay: int) -> np.ndarray:
        self.guided.append((np.asarray(previous).copy(), delay))
        return self.act(obs)


def test_rtc_inpaints_from_the_rows_still_playing_and_skips_the_stale_ones(monkeypatch):
    env = TaskEnv("drawer_tidy", cameras=())
    env.max_steps = 12
    policy = _Guidable(env.robot.home.copy())
    rtc, _ = _sent_actions(env, policy, monkeypatch, episode=0, realtime=Realtime(mode="rtc", latency_ms=100.0))
    skip, _ = _sent_actions(env, _Guidable(policy.start), monkeypatch, episode=0,
                            realtime=Realtime(mode="rtc", latency_ms=0.0))
    assert rtc == [0, 0, 12, 13, 14, 14, 22, 23, 24, 24, 32, 33]  # executed as skip
    # the first call has nothing in flight; each later one is given the unexecuted row(s)
    # of the chunk before (row 4 = offset 10c + 4) and the delay of the call before
    assert policy.calls == 3 and len(policy.guided) == 2
    for call, (previous, delay) in enumerate(policy.guided, start=1):
        assert delay == 2 and [round((r[0] - policy.start[0]) * 1000) for r in previous] == [10 * call + 4]
    assert skip[:4] == [10, 11, 20, 21]  # zero latency: plain chunks from row 0, never guided
    env.close()


def test_at_zero_latency_every_mode_is_exactly_the_normal_loop(tiny_pi0_checkpoint, monkeypatch):
    from pi0bench.registry import make_policy

    for name, modes, size in (("scripted", ("naive", "skip"), 16), ("pi0", ("naive", "skip", "rtc"), 16)):
        env = TaskEnv("drawer_tidy", cameras=None if name == "pi0" else (), image_size=size)
        env.max_steps = 60
        policy = make_policy(name, env, str(tiny_pi0_checkpoint) if name == "pi0" else None)
        runs = []
        for realtime in [None] + [Realtime(mode=m, latency_ms=0.0) for m in modes]:
            sent = []
            real_advance, real_step = env.advance, env.step
            monkeypatch.setattr(env, "advance", lambda a: (sent.append(np.array(a)), real_advance(a))[1])
            monkeypatch.setattr(env, "step", lambda a: (sent.append(np.array(a)), real_step(a))[1])
            record = run_episode(env, policy, task="drawer_tidy", policy_name=name, seed=0, episode=0,
                                 execute_steps=4 if name == "pi0" else None, realtime=realtime)
            monkeypatch.setattr(env, "advance", real_advance)
            monkeypatch.setattr(env, "step", real_step)
            assert record.error == "" and record.delay_steps == 0
            runs.append((np.stack(sent), record.final_state_sha))
        for actions, sha in runs[1:]:
            np.testing.assert_array_equal(actions, runs[0][0])
            assert sha == runs[0][1]
        env.close()


def _guided_and_plain(checkpoint, max_guidance: float):
    from pi0bench.registry import make_policy

    env = TaskEnv("drawer_tidy", image_size=16)
    policy = make_policy("pi0", env, str(checkpoint), {"rtc_max_guidance": max_guidance})
    obs, _ = env.reset(seed=0)
    policy.reset("drawer_tidy", 1)
    previous = policy.act(obs)[4:]  # the last chunk after 4 executed rows: 12 still to play
    policy.reset("drawer_tidy", 2)
    plain = policy.act(obs)
    policy.reset("drawer_tidy", 2)  # the same initial noise
    guided = policy.act_guided(obs, previous, 3)
    env.close()
    return previous, plain, guided


def test_rtc_without_guidance_is_plain_sampling_and_with_it_continues_the_frozen_rows(tiny_pi0_checkpoint):
    previous, plain, unguided = _guided_and_plain(tiny_pi0_checkpoint, 0.0)
    np.testing.assert_array_equal(unguided, plain)
    _, _, guided = _guided_and_plain(tiny_pi0_checkpoint, 5.0)
    frozen_plain = np.abs(plain[:3] - previous[:3]).max()
    frozen_guided = np.abs(guided[:3] - previous[:3]).max()
    # measured: 0.018 guided against 1.11 unguided on this model
    assert frozen_guided < 0.1 and frozen_plain > 5 * frozen_guided
    # beyond the overlap (rows 12..15) nothing is asked of the sample, so guidance moves it less
    assert np.abs(guided[12:] - plain[12:]).max() < np.abs(guided[:3] - plain[:3]).max()


def test_soft_mask_is_one_over_the_delay_decays_over_the_overlap_and_is_zero_after():
    from pi0bench.policies.pi0.policy import soft_mask

    w = soft_mask(horizon=10, overlap=7, delay=2)
    assert list(w[:2]) == [1.0, 1.0] and list(w[7:]) == [0.0, 0.0, 0.0]
    assert all(a > b for a, b in zip(w[1:7], w[2:7])) and 0 < w[6] < w[2] < 1
    c = 5 / 6  # row 2: (overlap - i) / (overlap - delay + 1)
    assert w[2] == pytest.approx(c * np.expm1(c) / np.expm1(1.0), rel=1e-6)
