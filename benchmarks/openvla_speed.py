"""OpenVLA and OpenVLA-OFT speed on this CPU: the cost of a policy call, and of a training step.

Measured in one run (the machine is shared and noisy; the best of several repeats is kept):
  calls      one observation of each robot through the policy's path (the batch of one
             sequence, then greedy decoding of D tokens with the key/value cache for
             openvla-small, one parallel pass for openvla-oft-small); best of 5. Per control
             step, openvla pays a whole call and OFT one call per 8 steps.
  training   loss + backward + AdamW at batch 32 on windows drawn from the demos given with
             --data, exactly as `pi0bench train` draws them; the mean over --steps steps
             after one warm-up step.

Usage: python benchmarks/openvla_speed.py --data data/demos-drawer_tidy --data data/demos-towel_fold \
           --data data/demos-paper_towel_replace [--steps 5] [--out benchmarks/results/openvla_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pi0bench.normalize import Normalizer
from pi0bench.policies.openvla.config import OPENVLA_OFT_SMALL, OPENVLA_SMALL
from pi0bench.policies.openvla.recipe import OpenVlaOftRecipe, OpenVlaRecipe
from pi0bench.train import TrainingData, batch_indices
from timing import best_of  # benchmarks/, the folder of the running script

ROBOTS = {"franka": (8, ("base", "wrist"), "put the items in the drawer and close it"),
          "aloha": (14, ("cam_high", "cam_left_wrist", "cam_right_wrist"), "replace the paper towel roll")}


def unit_normalizer(dim: int) -> Normalizer:
    zeros, ones = [0.0] * dim, [1.0] * dim
    return Normalizer.from_dict({"state_mean": zeros, "state_std": ones, "action_mean": zeros, "action_std": ones,
                                 "state_q01": [-1.0] * dim, "state_q99": ones, "action_q01": [-1.0] * dim,
                                 "action_q99": ones})


def call_ms(recipe, robot: str) -> float:
    """One policy call for one observation of `robot` (64 px images, as the demos)."""
    dim, cameras, prompt = ROBOTS[robot]
    rng = np.random.default_rng(0)
    obs = {"images": {c: rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for c in cameras},
           "state": np.zeros(dim, np.float32), "prompt": prompt}
    torch.manual_seed(0)
    model = recipe.build().eval()
    normalizers = {robot: unit_normalizer(dim)}

    def call():
        batch = recipe.batch([obs], [robot], normalizers)
        with torch.inference_mode():
            if recipe.mode == "oft":
                model.predict_chunk(batch)
            else:
                model.decode(batch, dim)

    call()
    return best_of(call) * 1e3


def train_step_s(recipe, data: TrainingData, steps: int) -> float:
    """Mean seconds of a batch-32 step (collate, loss, backward, AdamW) on the demos."""
    recipe = recipe.for_datasets([d.info for d in data.sets])
    normalizers = {r: Normalizer.from_dict(d) for r, d in data.normalizers.items()}
    torch.manual_seed(0)
    model = recipe.build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        idx = batch_indices(0, step, 32, [len(d) for d in data.sets])
        loss = model.loss(recipe.collate([data[int(i)] for i in idx], normalizers))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.mean(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", default=[], help="a demos dataset; repeat")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/openvla_speed.json"))
    args = parser.parse_args()
    oft = OpenVlaOftRecipe(replace(OPENVLA_OFT_SMALL, action_dim=14, state_dim=14))
    autoregressive = OpenVlaRecipe(OPENVLA_SMALL)
    result: dict = {"call_ms": {}}
    for robot in ROBOTS:
        result["call_ms"][f"openvla-small/{robot}"] = call_ms(autoregressive, robot)
        result["call_ms"][f"openvla-oft-small/{robot}"] = call_ms(oft, robot)
    if args.data:
        data = TrainingData(args.data, chunk=OPENVLA_OFT_SMALL.chunk)  # openvla reads the first action of each window
        result["train_step_s_batch32"] = {
            "openvla-small": train_step_s(autoregressive, data, args.steps),
            "openvla-oft-small": train_step_s(OpenVlaOftRecipe(OPENVLA_OFT_SMALL), data, args.steps)}
        result["data"] = [str(p) for p in args.data]
    result["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                         "threads": torch.get_num_threads(), "load_average_1min": os.getloadavg()[0]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
