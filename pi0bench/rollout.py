"""The one rollout loop every policy runs through.

An episode's initial state depends only on (task, base seed, episode index) — never on the
worker count, the order episodes finish in, or the policy — so two policies in a comparison
see identical starts. A policy that raises, returns a malformed chunk, or overruns its time
budget, or whose simulation diverges (MuJoCo resets a state gone bad), ends its episode as an
error record; nothing propagates out of `run_episode`.

Real-time mode (`realtime`, a `Realtime`): the world does not pause while the policy thinks;
`pi0bench.realtime` says what plays meanwhile and where the late chunk starts. With zero
latency this is exactly the normal loop.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

from pi0bench.realtime import Realtime, delay_steps, while_thinking


@dataclass
class EpisodeRecord:
    task: str
    policy: str
    seed: int
    episode: int
    episode_seed: int
    success: bool
    score: float
    points: float
    max_points: float
    stages: str  # JSON {stage: points earned}, rubric order; "{}" for an errored episode
    steps: int
    sim_seconds: float
    wall_seconds: float
    latency_mean_ms: float
    latency_p95_ms: float
    error: str
    delay_steps: int = 0  # control steps played while waiting on the policy (real-time mode)
    final_state_sha: str = ""  # sha256 of the simulator's final state (env.state_sha)
    call_latencies_ms: list[float] = field(default_factory=list)  # every policy call, in order
    # sha256 prefix of the weights the policy loaded ("" without weights): ties a stored number
    # to one checkpoint file, whichever folder or search path it was found through
    checkpoint_sha: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class PolicyTimeout(Exception):
    """A policy call exceeded its time budget."""


class SimulationDiverged(Exception):
    """MuJoCo reset the simulation after a state went bad (env info `sim_diverged`)."""


class BadPolicyOutput(Exception):
    """A policy returned something that is not a finite [H, D] action chunk."""


def episode_seed(task: str, base_seed: int, episode: int) -> int:
    """The seed of episode `episode`: a pure function of (task, base seed, index)."""
    sequence = np.random.SeedSequence([base_seed, episode, zlib.crc32(task.encode())])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


@contextmanager
def call_timeout(seconds: float | None):
    """Interrupt the block after `seconds` (SIGALRM; only in a process's main thread, which is
    where both the serial loop and pool workers run episodes)."""
    usable = seconds and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def _expire(signum, frame):
        raise PolicyTimeout(f"policy call exceeded {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_chunk(chunk, action_dim: int) -> np.ndarray:
    """Accept [H, D] (or a single [D] action); reject wrong shapes and non-finite values."""
    try:
        array = np.asarray(chunk, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise BadPolicyOutput(f"action chunk is not numeric: {exc}") from None
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != action_dim or array.shape[0] == 0:
        raise BadPolicyOutput(f"action chunk has shape {tuple(np.shape(chunk))}, "
                              f"expected [H, {action_dim}]")
    if not np.isfinite(array).all():
        raise BadPolicyOutput("action chunk contains NaN or inf")
    return array


def run_episode(env, policy, *, task: str, policy_name: str, seed: int, episode: int,
                execute_steps: int | None = None, timeout_s: float | None = None,
                frames: list | None = None, realtime: Realtime | None = None) -> EpisodeRecord:
    """Play one episode. `frames`, when given, receives every control step's camera images
    (for videos); otherwise observations are rendered only when the policy will read them.
    `realtime` lets simulated time run on during each policy call (module docstring)."""
    started = time.perf_counter()
    ep_seed = episode_seed(task, seed, episode)
    latencies: list[float] = []
    steps, waited, error, info = 0, 0, "", {}
    execute = execute_steps or getattr(policy, "execute_steps", None)
    action_dim = env.action_space.shape[0]
    base = env.unwrapped
    wrapped = env is not base  # a gymnasium wrapper sees every step, so the loop never bypasses it
    control_hz = float(env.metadata["render_fps"])
    guided = realtime is not None and realtime.mode == "rtc"

    def play(action, observe: bool):
        nonlocal obs, info, steps
        if observe or frames is not None or wrapped:
            obs, _, terminated, truncated, info = env.step(action)
            _keep_frame(frames, obs)
        else:
            _, terminated, truncated, info = base.advance(action)
        steps += 1
        return terminated or truncated

    try:
        if guided and not hasattr(policy, "act_guided"):
            raise BadPolicyOutput(f"{policy_name} cannot inpaint its chunks (no act_guided), so it cannot run rtc")
        obs, info = env.reset(seed=ep_seed)
        policy.reset(task, ep_seed)
        _keep_frame(frames, obs)
        latency = realtime.latency_source(ep_seed) if realtime else None
        leftover = np.zeros((0, action_dim), np.float32)  # rows of the last chunk not executed
        held = base.hold_action() if realtime else None  # the last commanded action
        delay, done = 0, False
        while not done:
            call_start = time.perf_counter()
            with call_timeout(timeout_s):
                # rtc assumes the last call's delay; with nothing in flight it is plain sampling
                inpaint = guided and delay > 0 and len(leftover) > 0
                raw = policy.act_guided(obs, leftover, delay) if inpaint else policy.act(obs)
            elapsed_ms = (time.perf_counter() - call_start) * 1000.0
            latencies.append(elapsed_ms)
            chunk = check_chunk(raw, action_dim)
            waiting, start = [], 0
            if realtime:
                delay = delay_steps(latency(elapsed_ms), control_hz)
                waiting, start = while_thinking(leftover, held, delay), realtime.first_fresh_row(delay, len(chunk))
            run = chunk[start:start + (execute or len(chunk))]
            leftover, held = chunk[start + len(run):], run[-1]
            plan = [*waiting, *run]
            for k, action in enumerate(plan):
                waited += k < len(waiting)
                done = play(action, observe=k == len(plan) - 1)
                if done:
                    break
        if info.get("sim_diverged"):
            raise SimulationDiverged(f"the simulation went unstable at control step {steps} and MuJoCo reset "
                                     "it; the episode is void")
    except Exception as exc:  # noqa: BLE001 - any failure becomes this episode's error record
        error = f"{type(exc).__name__}: {exc}".strip()[:2000]

    # what the episode earned comes from the env's info (so a wrapper's view is respected)
    if error:
        success, points, stages = False, 0.0, {}
    else:
        success, points, stages = bool(info["is_success"]), float(info["points"]), dict(info["stage_points"])
    max_points = float(info["max_points"]) if info else float(base.task.max_points)  # no info: reset failed
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    return EpisodeRecord(
        task=task, policy=policy_name, seed=seed, episode=episode, episode_seed=ep_seed,
        success=success, score=points / max_points, points=points,
        max_points=max_points, stages=json.dumps(stages), steps=steps,
        sim_seconds=float(info.get("sim_seconds", 0.0)), wall_seconds=time.perf_counter() - started,
        latency_mean_ms=float(lat.mean()), latency_p95_ms=float(np.percentile(lat, 95)),
        error=error, delay_steps=waited, final_state_sha=base.state_sha(), call_latencies_ms=latencies,
        checkpoint_sha=str(getattr(policy, "metadata", {}).get("checkpoint", "")),
    )


def _keep_frame(frames: list | None, obs: dict) -> None:
    if frames is not None and obs["images"]:
        frames.append(np.concatenate(list(obs["images"].values()), axis=1))
