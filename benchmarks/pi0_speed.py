"""π0 speed on this CPU: KV-cached vs uncached sampling, chunk latency, training throughput.

Measured in one run (ratios are what to compare; the machine is noisy):
  sampling     10 Euler steps for one observation (3 cameras, a 48-token prompt), pi0-small,
               with the prefix's keys/values computed once (cached) and recomputed at every
               step (uncached); best of 5.
  full size    the paper's config is not run here (3.3B parameters, ~13 GB in fp32): its chunk
               latency is estimated from the multiply-adds per chunk, counted from the
               parameter counts and token numbers, at the rate pi0-small achieves.
  training     samples/s of loss + backward + AdamW at batch 32, pi0-small, 3 cameras at 64 px.

Usage: python benchmarks/pi0_speed.py [--out benchmarks/results/pi0_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from pi0bench.policies.pi0.config import PI0, PI0_SMALL, Pi0Config
from pi0bench.policies.pi0.model import Pi0Model
from timing import best_of  # benchmarks/, the folder of the running script


def batch(cfg: Pi0Config, size: int) -> dict:
    image = cfg.vision.image_size
    return {
        "images": torch.rand(size, 3, 3, image, image) * 2 - 1,
        "image_mask": torch.ones(size, 3, dtype=torch.bool),
        "tokens": torch.randint(4, 200, (size, cfg.max_prompt_tokens)),
        "token_mask": torch.ones(size, cfg.max_prompt_tokens, dtype=torch.bool),
        "state": torch.randn(size, cfg.action_dim),
        "actions": torch.randn(size, cfg.horizon, cfg.action_dim),
        "action_weight": torch.ones(size, cfg.horizon, cfg.action_dim),
    }


def macs_per_chunk(cfg: Pi0Config) -> float:
    """Multiply-adds of one 10-step chunk: every weight once per token it touches."""
    with torch.device("meta"):
        model = Pi0Model(cfg)
    vision = sum(p.numel() for p in model.vision_tower.parameters())
    vlm = sum(p.numel() for layer in model.layers for p in layer.groups[0].parameters())
    expert = sum(p.numel() for layer in model.layers for p in layer.groups[1].parameters())
    patches = (cfg.vision.image_size // cfg.vision.patch_size) ** 2
    prefix_tokens = 3 * patches + cfg.max_prompt_tokens
    return 3 * patches * vision + prefix_tokens * vlm + 10 * (1 + cfg.horizon) * expert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pi0_speed.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    model = Pi0Model(PI0_SMALL).eval()
    one = batch(PI0_SMALL, 1)
    noise = torch.randn(1, PI0_SMALL.horizon, PI0_SMALL.action_dim)
    with torch.inference_mode():
        model.sample(one, noise=noise)
        cached = best_of(lambda: model.sample(one, noise=noise, use_cache=True))
        uncached = best_of(lambda: model.sample(one, noise=noise, use_cache=False))
    small_macs, full_macs = macs_per_chunk(PI0_SMALL), macs_per_chunk(PI0)

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    train_batch = batch(PI0_SMALL, 32)

    def step():
        loss = model.loss(train_batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    train_s = best_of(step, repeats=3)
    result = {
        "pi0_small_parameters": sum(p.numel() for p in model.parameters()),
        "chunk_cached_ms": cached * 1e3,
        "chunk_uncached_ms": uncached * 1e3,
        "cache_speedup": uncached / cached,
        "pi0_small_macs_per_chunk": small_macs,
        "pi0_full_macs_per_chunk": full_macs,
        "pi0_full_chunk_estimate_s": cached * full_macs / small_macs,
        "train_step_s_batch32": train_s,
        "train_samples_per_s": 32 / train_s,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
