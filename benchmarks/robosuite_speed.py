"""robosuite tasks' speed through the adapter: building, stepping and rendering, per task.

For each `robosuite/<Env>` task, on one core, measured in one run so the ratios are meaningful
on a noisy machine (best of 5 interleaved repeats):
  build        constructing the env (robosuite builds and compiles its model): seconds;
  reset        one seeded reset (without the cameras): ms;
  control      seeded random actions through `env.advance` (robosuite's step: 25 physics steps
               at 2 ms plus its controllers, then its success check), no rendering: control
               steps/s and real-time factor (robosuite's control rate is 20 Hz); also the same
               actions through robosuite's own `step`, to show what the adapter adds;
  render       the default policy cameras (agentview + eye-in-hand) at 84 and 128 px: ms per
               observation, and for Lift the same frames from robosuite's own offscreen
               renderer (`sim.render`), for comparison.

Usage: python benchmarks/robosuite_speed.py [--steps 200] [--out benchmarks/results/robosuite_speed.json]
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
import numpy as np  # noqa: E402

from pi0bench.registry import make_env  # noqa: E402
from pi0bench.tasks.robosuite_tasks import TASKS  # noqa: E402

CONTROL_HZ = 20.0
SIZES = (84, 128)
FRAMES = 10
REPEATS = 5


def _best(times: list[float]) -> float:
    return min(times)


def control(env, actions: np.ndarray, adapter: bool) -> float:
    """Seconds for `actions`, from the same seeded reset, through the adapter or robosuite."""
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        if adapter:
            env.advance(action)
        else:
            env.suite.step(action)
    return time.perf_counter() - start


def render_ms(env) -> float:
    """One observation (every default camera), after a first one that creates the renderer."""
    env.observe()
    start = time.perf_counter()
    for _ in range(FRAMES):
        env.observe()
    return (time.perf_counter() - start) / FRAMES * 1000.0


def robosuite_render_ms(env, size: int) -> float:
    """The same cameras from robosuite's own offscreen renderer (a context of its own)."""
    from robosuite.utils.binding_utils import MjRenderContextOffscreen

    sim = env.suite.sim
    if sim._render_context_offscreen is None:
        context = MjRenderContextOffscreen(sim, device_id=-1)
        context.vopt.geomgroup[0] = 0
    for camera in env.cameras:
        sim.render(size, size, camera_name=camera)
    start = time.perf_counter()
    for _ in range(FRAMES):
        for camera in env.cameras:
            sim.render(size, size, camera_name=camera)
    return (time.perf_counter() - start) / FRAMES * 1000.0


def measure(task: str, steps: int) -> dict:
    start = time.perf_counter()
    env = make_env(task, cameras=())
    build_s = time.perf_counter() - start
    resets = []
    for seed in range(5):
        t0 = time.perf_counter()
        env.reset(seed=seed)
        resets.append(time.perf_counter() - t0)
    actions = np.random.default_rng(0).uniform(env.action_space.low, env.action_space.high,
                                               size=(steps, env.action_space.shape[0]))
    sized = {size: make_env(task, image_size=size) for size in SIZES}
    for other in sized.values():
        other.reset(seed=0)
    compare_own = task == "robosuite/Lift"
    adapter, raw = [], []
    renders: dict[int, list[float]] = {size: [] for size in SIZES}
    own: dict[int, list[float]] = {size: [] for size in SIZES}
    for _ in range(REPEATS):
        adapter.append(control(env, actions, adapter=True))
        raw.append(control(env, actions, adapter=False))
        for size, other in sized.items():
            renders[size].append(render_ms(other))
            if compare_own:
                own[size].append(robosuite_render_ms(other, size))
    cameras = sized[SIZES[0]].cameras
    result = {
        "build_s": build_s,
        "reset_ms": 1000.0 * float(np.median(resets)),
        "cameras": list(cameras),
        "control_steps_per_s": steps / _best(adapter),
        "control_real_time_factor": steps / _best(adapter) / CONTROL_HZ,
        "robosuite_step_per_s": steps / _best(raw),
        "render_ms": {str(size): _best(renders[size]) for size in SIZES},
        "render_ms_per_camera": {str(size): _best(renders[size]) / len(cameras) for size in SIZES},
        "mesh_faces": int(env.model.nmeshface),
    }
    if compare_own:
        result["robosuite_own_render_ms"] = {str(size): _best(own[size]) for size in SIZES}
    for other in (env, *sized.values()):
        other.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="control steps per timing")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/robosuite_speed.json"))
    args = parser.parse_args()
    result = {
        "steps": args.steps,
        "tasks": {task: measure(task, args.steps) for task in TASKS},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "mujoco": mujoco.__version__,
                    "threads": os.environ.get("OMP_NUM_THREADS", "")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
