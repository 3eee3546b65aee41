"""What serving costs: one `act` policy call in-process vs the same call through
`pi0bench serve` over localhost (openpi protocol, msgpack), on the ALOHA observation openpi
clients send: state + 3 cameras at 224 px as CHW uint8 (~450 KB a message).

Measured in one run, alternating, so the ratio is meaningful on a noisy machine:
  in_process_ms   policy.act(obs) on the policy built here;
  remote_ms       RemotePolicy.act(obs) against a server in a subprocess (encode, send,
                  decode, the server's layout mapping + the same policy call, reply);
  overhead_ms     remote - in-process (median), i.e. what the protocol adds per call;
  protocol_ms     per remote call, the round trip minus the server's own inference time
                  (its server_timing.infer_ms): the same quantity measured within one call, so
                  it is immune to the load changing between the two measurements.

Usage: python benchmarks/serve_overhead.py [--calls 50] [--out benchmarks/results/serve_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from pi0bench.envs.task_env import TaskEnv  # noqa: E402
from pi0bench.registry import make_policy  # noqa: E402

TASK, SIZE = "towel_fold", 224
CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")


def start_server(threads: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    proc = subprocess.Popen([sys.executable, "-m", "pi0bench.cli", "serve", "--policy", "act", "--task", TASK,
                             "--port", "0"], stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stderr.readline()
    if "serving" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line}")
    return proc, line.split(" on ")[1].split(" ")[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_overhead.json"))
    args = parser.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    env = TaskEnv(TASK, image_size=SIZE)
    rng = np.random.default_rng(0)
    obs = {"images": {c: rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for c in CAMERAS},
           "state": env.robot.home.copy(), "prompt": env.task.instruction}
    local = make_policy("act", env)
    local.reset(TASK, 0)
    proc, url = start_server(threads)
    try:
        remote = make_policy(f"remote:{url}", env, args=({"layout": "aloha"}))
        remote.reset(TASK, 0)
        for _ in range(3):  # warm both
            local.act(obs), remote.act(obs)
        in_process, through_server, protocol = [], [], []
        for _ in range(args.calls):
            start = time.perf_counter()
            local.act(obs)
            in_process.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            remote.act(obs)
            through_server.append((time.perf_counter() - start) * 1000)
            protocol.append(through_server[-1] - remote.last_server_timing["infer_ms"])
        remote.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    local_ms, remote_ms = float(np.median(in_process)), float(np.median(through_server))
    result = {
        "benchmark": "serve_overhead", "task": TASK, "policy": "act", "layout": "aloha",
        "cameras": len(CAMERAS), "image_px": SIZE, "calls": args.calls, "omp_threads": threads,
        "in_process_ms_median": local_ms, "remote_ms_median": remote_ms,
        "overhead_ms_median": remote_ms - local_ms, "remote_over_in_process": remote_ms / local_ms,
        "protocol_ms_median": float(np.median(protocol)), "protocol_ms_p95": float(np.percentile(protocol, 95)),
        "in_process_ms_p95": float(np.percentile(in_process, 95)),
        "remote_ms_p95": float(np.percentile(through_server, 95)),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
