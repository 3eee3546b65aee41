"""Demonstration recording throughput: attempts per minute with 1 and 2 workers, in one run.

Records the same `--episodes` attempts of a task twice (`pi0bench demos --workers 1`, then
`--workers 2`, each into a fresh directory, with the policy cameras at 64 px as the training
data is recorded) and reports attempts/min and kept episodes/min for each, and their ratio.
The two datasets must be identical (the recording does not depend on the worker count); the
script checks it.

Usage: python benchmarks/demo_throughput.py --task drawer_tidy --episodes 8
       [--out benchmarks/results/demo_throughput_TASK.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from pi0bench.demos import DemoConfig, record_demos  # noqa: E402
from pi0bench.lerobot_dataset import DemoDataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="drawer_tidy")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(__file__).parent / "results" / f"demo_throughput_{args.task}.json"
    result = {"task": args.task, "episodes": args.episodes, "image_size": 64, "cpus": os.cpu_count(),
              "platform": platform.platform(), "workers": {}}
    actions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            root = Path(tmp) / f"w{workers}"
            start = time.perf_counter()
            counts = record_demos(DemoConfig(task=args.task, episodes=args.episodes, out=root, workers=workers))
            minutes = (time.perf_counter() - start) / 60
            actions[workers] = DemoDataset(root, chunk=1).actions
            result["workers"][str(workers)] = {
                "seconds": minutes * 60, "attempts_per_min": args.episodes / minutes,
                "kept": counts["kept"], "kept_per_min": counts["kept"] / minutes}
    result["speedup_2_vs_1"] = result["workers"]["2"]["attempts_per_min"] / result["workers"]["1"]["attempts_per_min"]
    result["identical_datasets"] = bool(np.array_equal(actions[1], actions[2]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
