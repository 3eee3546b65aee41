"""π0 as a policy the rollout loop can run: observation in, a chunk of joint targets out."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from pi0bench.checkpoint import load_for_env
from pi0bench.envs.description import EnvDescription
from pi0bench.errors import UserError
from pi0bench.policies.base import padded, stack_rows
from pi0bench.policies.device import model_device, to_device
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
    guided to continue the chunk still being executed; `rtc_max_guidance` is its clip β.

    `noise_scale` multiplies the initial noise (a sampling temperature): 1 samples the learned
    distribution, 0 integrates the flow from its centre, the most likely chunk of a model that
    has not yet narrowed its spread."""

    def __init__(self, description: EnvDescription, checkpoint: Path, rtc_max_guidance: float = 5.0,
                 noise_scale: float = 1.0, device: str = "cpu"):
        self.recipe, self.model, self.normalizer, self.metadata = load_for_env(checkpoint, description, Pi0Recipe,
                                                                               device)
        self.action_dim = description.action_dim
        self.execute_steps = 25 if description.control_hz >= 50 else 16
        self.rtc_max_guidance = float(rtc_max_guidance)
        if not 0.0 <= float(noise_scale) <= 1.0:
            raise UserError(f"pi0's noise_scale must be in [0, 1], got {noise_scale}; "
                            "use 1 to sample, 0 for the flow's centre")
        self.noise_scale = float(noise_scale)
        self._generator = torch.Generator().manual_seed(0)

    def reset(self, task: str, seed: int) -> None:
        self._generator = torch.Generator().manual_seed(int(seed))

    def act(self, obs: dict) -> np.ndarray:
        return self.act_batch([self], [obs])[0]

    @classmethod
    def act_batch(cls, policies: list[Pi0Policy], observations: list[dict], rows: int | None = None) -> list[np.ndarray]:
        """One batched sample for the observations of several siblings (base.act_batch); each
        row's initial noise comes from its own policy's generator."""
        examples = padded([p._inputs(o) for p, o in zip(policies, observations)], rows)
        batch = {k: stack_rows([e[k] for e in examples]) for k in examples[0]}
        noise = torch.cat(padded([p._noise() for p in policies], rows))
        model = policies[0].model
        device = model_device(model)
        with torch.no_grad():
            chunks = model.sample(to_device(batch, device), steps=FLOW_STEPS,
                                  noise=noise.to(device)).cpu().numpy()
        return [p._unaction(chunk) for p, chunk in zip(policies, chunks)]

    def act_guided(self, obs: dict, previous: np.ndarray, delay: int) -> np.ndarray:
        """A chunk whose first rows continue `previous` — the last chunk's rows not yet
        executed, of which the first `delay` play while this call runs."""
        cfg = self.recipe.config
        overlap = min(len(previous), cfg.horizon)
        target = np.zeros((cfg.horizon, cfg.action_dim), np.float32)
        target[:overlap, : self.action_dim] = self.normalizer.action(np.asarray(previous[:overlap], np.float32))
        weights = np.zeros_like(target)
        weights[:, : self.action_dim] = soft_mask(cfg.horizon, overlap, delay)[:, None]
        device = model_device(self.model)
        return self._sample(obs, Guidance(torch.from_numpy(target)[None].to(device),
                                          torch.from_numpy(weights)[None].to(device), self.rtc_max_guidance))

    def _sample(self, obs: dict, guidance: Guidance) -> np.ndarray:
        device = model_device(self.model)
        batch = {k: v[None].to(device) for k, v in self._inputs(obs).items()}
        # no_grad rather than inference_mode: guidance differentiates through the flow
        with torch.no_grad():
            chunk = self.model.sample(batch, steps=FLOW_STEPS, noise=self._noise().to(device),
                                      guidance=guidance)[0].cpu().numpy()
        return self._unaction(chunk)

    def _inputs(self, obs: dict) -> dict:
        cfg = self.recipe.config
        return example(list(obs["images"].values()), obs["state"], obs["prompt"], self.normalizer,
                       self.recipe.tokenizer, cfg.vision.image_size, cfg.max_prompt_tokens, cfg.action_dim)

    def _noise(self) -> torch.Tensor:
        cfg = self.recipe.config
        return self.noise_scale * torch.randn((1, cfg.horizon, cfg.action_dim), generator=self._generator)

    def _unaction(self, chunk: np.ndarray) -> np.ndarray:
        return self.normalizer.unaction(chunk[:, : self.action_dim]).astype(np.float32)


def make_pi0(description: EnvDescription, checkpoint: Path, rtc_max_guidance: float = 5.0,
             noise_scale: float = 1.0, device: str = "cpu") -> Pi0Policy:
    """`noise_scale`: the sampling temperature (Pi0Policy); `device`: where the model runs
    (policies/device.py)."""
    return Pi0Policy(description, checkpoint, rtc_max_guidance, noise_scale, device)
