"""π0 as a policy the rollout loop can run: observation in, a chunk of joint targets out."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from pi0bench.checkpoint import load_for_env, resolve
from pi0bench.policies.pi0.inputs import example
from pi0bench.policies.pi0.model import Guidance
from pi0bench.policies.pi0.recipe import Pi0Recipe

FLOW_STEPS = 10


def soft_mask(horizon: int, overlap: int, delay: int) -> np.ndarray:
    """Real-time chunking's per-row guidance weights: 1 for the `delay` rows being executed
    while the chunk is computed, decaying exponentially over the rest of the `overlap` with the
    previous chunk, 0 beyond it (Black, Galliker & Levine 2025, eq. 5)."""
    rows = np.arange(horizon, dtype=np.float64)
    c = (overlap - rows) / max(overlap - delay + 1, 1)
    weights = np.where(rows < delay, 1.0, c * np.expm1(c) / math.expm1(1.0))
    return np.where(rows < overlap, weights, 0.0).clip(0.0, 1.0).astype(np.float32)


class Pi0Policy:
    """Samples an H-step chunk with 10 Euler steps; the loop executes the first 25 at 50 Hz
    robots and 16 at 20 Hz robots (the paper's choice). The initial noise of each chunk comes
    from a generator seeded by the episode seed, so an episode replays exactly.

    `act_guided` is the real-time-chunking variant (`--realtime-mode rtc`): the same sample,
    guided to continue the chunk still being executed; `rtc_max_guidance` is its clip β."""

    def __init__(self, env, checkpoint: Path, rtc_max_guidance: float = 5.0):
        self.recipe, self.model, self.normalizer, self.metadata = load_for_env(checkpoint, env, Pi0Recipe)
        self.action_dim = env.robot.action_dim
        self.execute_steps = 25 if env.robot.control_hz >= 50 else 16
        self.rtc_max_guidance = float(rtc_max_guidance)
        self._generator = torch.Generator().manual_seed(0)

    def reset(self, task: str, seed: int) -> None:
        self._generator = torch.Generator().manual_seed(int(seed))

    def act(self, obs: dict) -> np.ndarray:
        return self._sample(obs, None)

    def act_guided(self, obs: dict, previous: np.ndarray, delay: int) -> np.ndarray:
        """A chunk whose first rows continue `previous` — the last chunk's rows not yet
        executed, of which the first `delay` play while this call runs."""
        cfg = self.recipe.config
        overlap = min(len(previous), cfg.horizon)
        target = np.zeros((cfg.horizon, cfg.action_dim), np.float32)
        target[:overlap, : self.action_dim] = self.normalizer.action(np.asarray(previous[:overlap], np.float32))
        weights = np.zeros_like(target)
        weights[:, : self.action_dim] = soft_mask(cfg.horizon, overlap, delay)[:, None]
        return self._sample(obs, Guidance(torch.from_numpy(target)[None], torch.from_numpy(weights)[None],
                                          self.rtc_max_guidance))

    def _sample(self, obs: dict, guidance: Guidance | None) -> np.ndarray:
        cfg = self.recipe.config
        inputs = example(list(obs["images"].values()), obs["state"], obs["prompt"], self.normalizer,
                         self.recipe.tokenizer, cfg.vision.image_size, cfg.max_prompt_tokens,
                         cfg.action_dim)
        batch = {k: v[None] for k, v in inputs.items()}
        noise = torch.randn((1, cfg.horizon, cfg.action_dim), generator=self._generator)
        # no_grad rather than inference_mode: guidance differentiates through the flow
        with torch.no_grad():
            chunk = self.model.sample(batch, steps=FLOW_STEPS, noise=noise, guidance=guidance)[0].numpy()
        return self.normalizer.unaction(chunk[:, : self.action_dim]).astype(np.float32)


def make_pi0(env, checkpoint: str | Path | None = None, rtc_max_guidance: float = 5.0) -> Pi0Policy:
    return Pi0Policy(env, resolve(checkpoint, "pi0-small", "pi0"), rtc_max_guidance)
