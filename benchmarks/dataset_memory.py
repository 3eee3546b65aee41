"""What a training's dataset costs in memory and start-up time: every camera's video decoded
into the process's own memory, against the decoded memory map that `DemoDataset` now reads
(ROOT/decoded/, written once and shared through the page cache by every process that reads
it). Each way runs in a fresh process, so its peak memory is its own; all in one run.

Reported per way: seconds to open the dataset, then the process's private (anonymous) and
file-backed resident memory after every frame has been read once. File-backed pages are the
page cache's: a second training on the same dataset maps the same pages instead of holding a
copy, and the kernel can drop them under pressure instead of killing a process.

Usage: python benchmarks/dataset_memory.py --data DATASET [--out benchmarks/results/dataset_memory.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

WAYS = ("in_memory", "memory_map_first_open", "memory_map_next_open")


def resident_mb() -> dict[str, float]:
    """This process's RssAnon / RssFile / VmHWM from /proc, in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile", "VmHWM")}


def measure(root: Path, way: str) -> dict:
    """Open the dataset `way`, read every frame once, report time and memory."""
    import pi0bench.lerobot_dataset as lerobot_dataset
    from pi0bench.lerobot_dataset import DemoDataset, video_file

    start = time.perf_counter()
    if way == "in_memory":
        frames = len(pd.read_parquet(root / lerobot_dataset.DATA_FILE, columns=["episode_index"]))
        info, _ = lerobot_dataset.read_meta(root)
        cameras = [k.removeprefix("observation.images.") for k, f in info["features"].items()
                   if f["dtype"] == "video"]
        images = {c: lerobot_dataset._decode(root / video_file(c), frames,
                                             lambda shape: np.empty(shape, np.uint8)) for c in cameras}
    else:
        images = DemoDataset(root).images
    opened = time.perf_counter() - start
    checksum = sum(int(array[::1000].sum()) for array in images.values())
    for array in images.values():  # touch every page, as an epoch of training does
        for begin in range(0, len(array), 4096):
            np.asarray(array[begin:begin + 4096]).max()
    return {"open_s": round(opened, 2), "checksum": checksum,
            "frames_mb": round(sum(a.nbytes for a in images.values()) / 2**20, 1),
            **{k: round(v, 1) for k, v in resident_mb().items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dataset_memory.json"))
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)  # one measurement, in a child
    args = parser.parse_args()
    if args.way:
        print(json.dumps(measure(args.data, args.way)))
        return
    results = {}
    for way in WAYS:
        if way == "memory_map_first_open":
            shutil.rmtree(args.data / "decoded", ignore_errors=True)
        child = subprocess.run([sys.executable, __file__, "--data", str(args.data), "--way", way],
                               capture_output=True, text=True, check=True)
        results[way] = json.loads(child.stdout.strip().splitlines()[-1])
        print(way, results[way], flush=True)
    if len({r["checksum"] for r in results.values()}) != 1:
        raise SystemExit("the ways read different frames")
    report = {"benchmark": "dataset_memory", "dataset": args.data.name, "machine": platform.machine(),
              "python": platform.python_version(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
