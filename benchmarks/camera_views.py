"""Every task's cameras at the resolution policies learn from (64 px), at the initial state of
evaluation episode 0, as one strip per task: results/cameras/TASK.png (upscaled 3x, nearest
neighbour, so a reader sees the pixels a policy sees).

Usage: python benchmarks/camera_views.py [--size 64]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import imageio.v2 as imageio  # noqa: E402
import numpy as np  # noqa: E402

from pi0bench.registry import make_env, make_task  # noqa: E402
from pi0bench.rollout import episode_seed  # noqa: E402

TASKS = ("drawer_tidy", "towel_fold", "paper_towel_replace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "results" / "cameras")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        cameras = make_task(task).make_robot().cameras
        env = make_env(task, cameras=cameras, image_size=args.size)
        obs, _ = env.reset(seed=episode_seed(task, 0, 0))
        env.close()
        gap = np.full((args.size, 2, 3), 255, np.uint8)
        strip = np.concatenate([part for c in cameras for part in (obs["images"][c], gap)][:-1], axis=1)
        imageio.imwrite(args.out / f"{task}.png", strip.repeat(3, axis=0).repeat(3, axis=1))
        print(f"{args.out / f'{task}.png'}: {', '.join(cameras)}")


if __name__ == "__main__":
    main()
