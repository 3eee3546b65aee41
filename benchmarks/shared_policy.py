"""One model, many simulators: what batching buys, measured in one run.

1. `eval --shared-policy` with pi0-small (committed default checkpoint) on drawer_tidy at
   64 px, with 1, 2, 4 and 8 simulator workers against one shared model (one policy thread),
   each worker playing one episode, with batching (every forward pass at --max-batch =
   workers rows) and without (--max-batch 1: one call at a time): episodes/s, calls/s and the
   batched/unbatched ratio per worker count.
2. `pi0bench serve` (a subprocess) answering 8 concurrent clients (threads here, each a
   RemotePolicy sending the same observation), --max-batch 8 vs --max-batch 1: calls/s and
   the ratio, plus the batch sizes the server reported.

Usage: python benchmarks/shared_policy.py [--workers 1,2,4,8] [--calls 20]
                                          [--out benchmarks/results/shared_policy.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from pi0bench.envs.task_env import TaskEnv  # noqa: E402
from pi0bench.evaluate import EvalConfig, evaluate  # noqa: E402
from pi0bench.policies.remote import RemotePolicy  # noqa: E402
from pi0bench.store import RunStore  # noqa: E402

POLICY, TASK, SIZE = "pi0", "drawer_tidy", 64


def shared_eval(workers: int, max_batch: int, root: Path) -> dict:
    out = root / f"w{workers}-b{max_batch}"
    start = time.perf_counter()
    evaluate(EvalConfig(policy=POLICY, task=TASK, episodes=workers, workers=workers, image_size=SIZE, out=out,
                        shared_policy=True, max_batch=max_batch, timeout_s=None))
    wall = time.perf_counter() - start
    episodes = RunStore(out).load()
    calls = int(episodes["call_latencies_ms"].map(len).sum())
    return {"workers": workers, "max_batch": max_batch, "episodes": len(episodes), "calls": calls,
            "wall_s": wall, "episodes_per_s": len(episodes) / wall, "calls_per_s": calls / wall,
            "errors": int((episodes["error"] != "").sum())}


def start_server(max_batch: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pi0bench.cli", "serve", "--policy", POLICY, "--task", TASK,
                             "--port", "0", "--max-batch", str(max_batch)], stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stderr.readline()
    if "serving" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line}{proc.stderr.read()}")
    return proc, line.split(" on ")[1].split(" ")[0]


def serve_throughput(max_batch: int, clients: int, calls: int) -> dict:
    env = TaskEnv(TASK, image_size=SIZE)
    obs, _ = env.reset(seed=0)
    description = env.description
    env.close()
    proc, url = start_server(max_batch)
    sizes: Counter[int] = Counter()
    try:
        policies = [RemotePolicy(description, url) for _ in range(clients)]
        for k, policy in enumerate(policies):
            policy.reset(TASK, k)
            policy.act(obs)  # warm
        barrier = threading.Barrier(clients + 1)

        def client(policy) -> None:
            barrier.wait()
            for _ in range(calls):
                policy.act(obs)
                sizes[int(policy.last_server_timing.get("batch_size", 1))] += 1

        threads = [threading.Thread(target=client, args=(p,)) for p in policies]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        for policy in policies:
            policy.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return {"max_batch": max_batch, "clients": clients, "calls": clients * calls, "wall_s": wall,
            "calls_per_s": clients * calls / wall, "batch_sizes_seen": dict(sorted(sizes.items()))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--calls", type=int, default=20, help="calls per serve client")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/shared_policy.json"))
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    evals = []
    with tempfile.TemporaryDirectory() as root:
        for workers in (int(w) for w in args.workers.split(",")):
            unbatched = shared_eval(workers, 1, Path(root))
            batched = shared_eval(workers, workers, Path(root)) if workers > 1 else unbatched
            evals.append({"workers": workers, "unbatched": unbatched, "batched": batched,
                          "batched_over_unbatched_episodes_per_s": batched["episodes_per_s"] / unbatched["episodes_per_s"]})
            print(json.dumps(evals[-1]), flush=True)
    serve_one = serve_throughput(1, 8, args.calls)
    serve_batched = serve_throughput(8, 8, args.calls)
    result = {
        "benchmark": "shared_policy", "policy": POLICY, "task": TASK, "image_px": SIZE, "policy_threads": 1,
        "shared_eval": evals,
        "serve": {"one_at_a_time": serve_one, "batched": serve_batched,
                  "batched_over_one_at_a_time_calls_per_s": serve_batched["calls_per_s"] / serve_one["calls_per_s"]},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["serve"], indent=2))


if __name__ == "__main__":
    main()
