"""How much the harness costs on top of MuJoCo, and how it scales with workers.

Measured in one run, so the ratios are meaningful on a noisy machine:
  raw        mj_step × substeps + rendering both cameras, every control step, no harness;
  harness    the rollout loop with the `hold` policy (chunks of 20; only the frames a policy
             reads are rendered, which is what `pi0bench eval` does);
  harness_every_frame  the same loop rendering every control step (what --videos does), the
             like-for-like comparison with `raw`;
  workers    episodes/s of the scripted expert with 2 workers vs 1 (wall time of the whole
             run, pool start-up included, and steady state after each worker's first episode).

Usage: python benchmarks/harness_overhead.py [--out benchmarks/results/harness_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402

from pi0bench.envs.render import CameraRenderer  # noqa: E402
from pi0bench.envs.task_env import TaskEnv  # noqa: E402
from pi0bench.registry import make_policy  # noqa: E402
from pi0bench.rollout import run_episode  # noqa: E402
from pi0bench.workers import EpisodeJob, run_episodes  # noqa: E402

TASK = "drawer_tidy"
IMAGE = 128


def raw_steps_per_second(steps: int) -> float:
    env = TaskEnv(TASK, image_size=IMAGE)
    env.reset(seed=0)
    model, data = env.model, env.data
    renderer = CameraRenderer(model, IMAGE, IMAGE)
    env.robot.apply_action(data, env.robot.home)
    start = time.perf_counter()
    for _ in range(steps):
        mujoco.mj_step(model, data, nstep=env.substeps)
        renderer.render(data, env.cameras)
    elapsed = time.perf_counter() - start
    renderer.close()
    env.close()
    return steps / elapsed


def harness_steps_per_second(episodes: int, every_frame: bool) -> float:
    env = TaskEnv(TASK, image_size=IMAGE)
    policy = make_policy("hold", env)
    steps, start = 0, time.perf_counter()
    for episode in range(episodes):
        frames = [] if every_frame else None
        record = run_episode(env, policy, task=TASK, policy_name="hold", seed=0,
                             episode=episode, frames=frames)
        steps += record.steps
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def worker_throughput(workers: int, episodes: int) -> dict:
    job = EpisodeJob(task=TASK, policy="scripted", seed=0, cameras=None, image_size=IMAGE,
                     execute_steps=None, timeout_s=None, videos=0, video_dir="")
    stamps: list[float] = []
    start = time.perf_counter()
    run_episodes(job, range(episodes), workers, lambda record: stamps.append(time.perf_counter()))
    wall = time.perf_counter() - start
    steady = (episodes - workers) / (stamps[-1] - stamps[workers - 1]) if episodes > workers else 0.0
    return {"workers": workers, "episodes": episodes, "wall_s": wall,
            "episodes_per_s": episodes / wall, "steady_episodes_per_s": steady}


def best_of(repeats: int, *measures):
    """Interleave the measures `repeats` times and keep each one's best (least disturbed)."""
    results = [[] for _ in measures]
    for _ in range(repeats):
        for slot, measure in zip(results, measures):
            slot.append(measure())
    return [max(slot) for slot in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/harness_overhead.json"))
    parser.add_argument("--raw-steps", type=int, default=800)
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker-episodes", type=int, default=6)
    args = parser.parse_args()

    raw, harness, every = best_of(
        args.repeats,
        lambda: raw_steps_per_second(args.raw_steps),
        lambda: harness_steps_per_second(args.episodes, every_frame=False),
        lambda: harness_steps_per_second(args.episodes, every_frame=True),
    )
    one = worker_throughput(1, args.worker_episodes)
    two = worker_throughput(2, args.worker_episodes)
    result = {
        "task": TASK, "image_size": IMAGE, "cameras": ["base", "wrist"],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "repeats": args.repeats,
        "raw_control_steps_per_s": raw,
        "harness_hold_control_steps_per_s": harness,
        "harness_every_frame_control_steps_per_s": every,
        "ratio_harness_vs_raw": harness / raw,
        "ratio_every_frame_vs_raw": every / raw,
        "workers_1": one, "workers_2": two,
        "speedup_2_vs_1_wall": two["episodes_per_s"] / one["episodes_per_s"],
        "speedup_2_vs_1_steady": (two["steady_episodes_per_s"] / one["steady_episodes_per_s"]
                                  if one["steady_episodes_per_s"] else 0.0),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
