"""Where a training step goes, per policy: data (windows + collate), forward, backward and the
optimizer, on one torch thread, at batch 32, on a real demos dataset; samples/s from the sum.

All policies are measured in one run, so their ratios mean something on a noisy machine;
each phase is the median over the measured steps (after warm-up steps).

Usage: python benchmarks/train_speed.py --data DATASET [--policies act,dp,pi0] [--steps 6]
       [--out benchmarks/results/train_speed.json]

A policy may carry model-config overrides to compare variants in the same run, e.g.
`--policies pi0:image_pool=1,pi0:image_pool=2` (checked as `pi0bench train --model-arg` checks
them; values are read as JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pi0bench.normalize import Normalizer
from pi0bench.registry import recipe_class
from pi0bench.train import TrainingData, batch_indices, with_model_args

PHASES = ("data", "forward", "backward", "optimizer")


def recipe_for(spec: str):
    """`policy` or `policy:field=value:field=value` -> that family's default recipe, overridden."""
    policy, *overrides = spec.split(":")
    recipe_cls = recipe_class(policy)
    recipe = recipe_cls.from_name(recipe_cls.default_config)
    args = tuple((name, json.loads(value)) for name, value in (item.split("=", 1) for item in overrides))
    return recipe_cls.from_dict(with_model_args(recipe.config_dict(), args))


def measure(spec: str, data_root: Path, batch: int, steps: int, warmup: int = 2) -> dict:
    recipe = recipe_for(spec)
    data = TrainingData([data_root], recipe.chunk, recipe.history)
    recipe = recipe.for_datasets([d.info for d in data.sets])
    normalizers = {r: Normalizer.from_dict(d) for r, d in data.normalizers.items()}
    torch.manual_seed(0)
    model = recipe.build().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = {p: [] for p in PHASES}
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        idx = batch_indices(0, step, batch, [len(d) for d in data.sets])
        sample = recipe.collate([data[int(i)] for i in idx], normalizers)
        t1 = time.perf_counter()
        loss = recipe.loss(model, sample)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        if step >= warmup:
            for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[phase].append(seconds)
    median = {p: float(np.median(v)) for p, v in times.items()}
    total = sum(median.values())
    return {"model": recipe.config.name, "parameters": sum(p.numel() for p in model.parameters()),
            "batch": batch, "step_seconds": total, "samples_per_s": batch / total,
            "phase_seconds": median, "phase_share": {p: v / total for p, v in median.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--policies", default="act,dp,pi0")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {"data": str(args.data), "threads": 1, "cpus": os.cpu_count(), "platform": platform.platform(),
              "policies": {p: measure(p, args.data, args.batch, args.steps) for p in args.policies.split(",")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
