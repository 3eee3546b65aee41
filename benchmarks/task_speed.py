"""A task's speed: physics alone, and full control steps with the policy cameras.

One scripted episode (seed 0, the expert doing the whole task), measured in one run so the
ratios are meaningful on a noisy machine:
  physics      MuJoCo's own step timer over the episode: steps/s and real-time factor
               (real time = 500 physics steps/s at 2 ms), split into collision detection and
               the constraint solver; also with MuJoCo's default Newton solver (tolerance
               1e-8) for comparison with the task's own setting;
  control      env.advance + rendering the robot's default policy cameras at 128 px every
               control step + the expert's IK: control steps/s and real-time factor, with the
               share of each part;
  rubric       cost of one evaluation of the rubric on the final state.

Usage: python benchmarks/task_speed.py --task towel_fold [--out benchmarks/results/towel_fold_speed.json]
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

from pi0bench.envs.task_env import TaskEnv  # noqa: E402
from pi0bench.registry import make_policy  # noqa: E402

IMAGE = 128
PHYSICS_HZ = 500.0


def episode(task: str, cameras: tuple[str, ...] | None, newton: bool = False) -> dict:
    env = TaskEnv(task, cameras=cameras, image_size=IMAGE)
    if newton:
        env.model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
        env.model.opt.tolerance = 1e-8
    obs, _ = env.reset(seed=0)
    policy = make_policy("scripted", env)
    policy.reset(task, 0)
    for timer in env.data.timer:
        timer.duration, timer.number = 0.0, 0
    parts = {"policy": 0.0, "advance": 0.0, "render": 0.0}
    steps, info = 0, {}
    start = time.perf_counter()
    for _ in range(env.max_steps):
        t0 = time.perf_counter()
        action = policy.act(obs)[0]
        t1 = time.perf_counter()
        _, terminated, truncated, info = env.advance(action)
        t2 = time.perf_counter()
        obs = env.observe()
        t3 = time.perf_counter()
        parts["policy"] += t1 - t0
        parts["advance"] += t2 - t1
        parts["render"] += t3 - t2
        steps += 1
        if terminated or truncated:
            break
    wall = time.perf_counter() - start
    timers = env.data.timer
    physics = timers[mujoco.mjtTimer.mjTIMER_STEP].duration
    physics_steps = timers[mujoco.mjtTimer.mjTIMER_STEP].number
    rubric_start = time.perf_counter()
    for _ in range(100):
        env.task.evaluate(env.model, env.data)
    rubric_ms = (time.perf_counter() - rubric_start) * 10.0
    hz = env.robot.control_hz
    env.close()
    return {
        "control_steps": steps,
        "success": bool(info.get("is_success")),
        "control_steps_per_s": steps / wall,
        "control_real_time_factor": steps / wall / hz,
        "share": {name: seconds / wall for name, seconds in parts.items()},
        "physics_steps_per_s": physics_steps / physics,
        "physics_real_time_factor": physics_steps / physics / PHYSICS_HZ,
        "physics_share": {
            "collision": timers[mujoco.mjtTimer.mjTIMER_POS_COLLISION].duration / physics,
            "constraint_solver": timers[mujoco.mjtTimer.mjTIMER_CONSTRAINT].duration / physics,
            "constraint_build": timers[mujoco.mjtTimer.mjTIMER_POS_MAKE].duration / physics,
        },
        "rubric_ms": rubric_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="towel_fold")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/TASK_speed.json")
    args = parser.parse_args()
    out = args.out or Path(f"benchmarks/results/{args.task}_speed.json")
    physics_only = episode(args.task, cameras=())
    newton = episode(args.task, cameras=(), newton=True)
    full = episode(args.task, cameras=None)
    result = {
        "task": args.task,
        "image_size": IMAGE,
        "physics_only": physics_only,
        "physics_only_newton": newton,
        "task_solver_over_newton_physics": physics_only["physics_steps_per_s"] / newton["physics_steps_per_s"],
        "with_default_cameras": full,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "mujoco": mujoco.__version__},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
