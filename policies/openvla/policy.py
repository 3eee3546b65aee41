"""OpenVLA and OpenVLA-OFT as policies the rollout loop can run.

`openvla` decodes one action (D tokens, greedily) per call and the loop executes it: one
forward pass over the prefix and D − 1 cached steps every control step, which is why
OpenVLA is slow. `openvla-oft` predicts a chunk in one parallel pass and the loop executes
all of it before asking again, as OFT does. Neither samples anything, so an episode replays
exactly without seeding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pi0bench.checkpoint import load_for_env
from pi0bench.envs.description import EnvDescription
from pi0bench.policies.base import padded
from pi0bench.policies.device import model_device, to_device
from pi0bench.policies.openvla.action_tokenizer import from_unit
from pi0bench.policies.openvla.config import AUTOREGRESSIVE
from pi0bench.policies.openvla.inputs import camera_for
from pi0bench.policies.openvla.recipe import OpenVlaOftRecipe, OpenVlaRecipe, action_tokenizer, percentiles



class OpenVlaPolicy:
    def __init__(self, description: EnvDescription, checkpoint: Path, policy: str, device: str = "cpu"):
        recipe_class = OpenVlaOftRecipe if policy == "openvla-oft" else OpenVlaRecipe
        self.recipe, self.model, self.normalizer, self.metadata = load_for_env(checkpoint, description, recipe_class,
                                                                               device)
        self.robot, self.action_dim = description.robot, description.action_dim
        camera_for(self.robot)
        config = self.recipe.config
        self.execute_steps = config.chunk
        self.autoregressive = config.mode == AUTOREGRESSIVE
        self.tokenizer = action_tokenizer(config, self.normalizer) if self.autoregressive else None
        self.bounds = percentiles(self.normalizer, "action")

    def reset(self, task: str, seed: int) -> None:
        """Nothing to reset: decoding is greedy and the regression head deterministic."""

    def act(self, obs: dict) -> np.ndarray:
        return self.act_batch([self], [obs])[0]

    @classmethod
    def act_batch(cls, policies: list[OpenVlaPolicy], observations: list[dict], rows: int | None = None) -> list[np.ndarray]:
        """One (left-padded) batch for the observations of several siblings (base.act_batch)."""
        first = policies[0]
        n = len(policies)
        rows_in = padded(list(observations), rows)
        batch = first.recipe.batch(rows_in, [first.robot] * len(rows_in), {first.robot: first.normalizer})
        batch = to_device(batch, model_device(first.model))
        with torch.inference_mode():
            if first.autoregressive:
                tokens = first.model.decode(batch, first.action_dim).cpu().numpy()
                return [first.tokenizer.decode(row)[None] for row in tokens[:n]]
            chunks = first.model.predict_chunk(batch)[:n, :, : first.action_dim].cpu().numpy()
        return [from_unit(chunk, *first.bounds) for chunk in chunks]


def make_openvla(description: EnvDescription, checkpoint: Path, device: str = "cpu") -> OpenVlaPolicy:
    """`device`: where the model runs (policies/device.py)."""
    return OpenVlaPolicy(description, checkpoint, "openvla", device)


def make_openvla_oft(description: EnvDescription, checkpoint: Path, device: str = "cpu") -> OpenVlaPolicy:
    """`device`: where the model runs (policies/device.py)."""
    return OpenVlaPolicy(description, checkpoint, "openvla-oft", device)
