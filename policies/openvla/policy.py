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

from pi0bench.checkpoint import load_for_env, resolve
from pi0bench.policies.openvla.action_tokenizer import from_unit
from pi0bench.policies.openvla.config import AUTOREGRESSIVE
from pi0bench.policies.openvla.inputs import camera_for
from pi0bench.policies.openvla.recipe import OpenVlaOftRecipe, OpenVlaRecipe, action_tokenizer, percentiles



class OpenVlaPolicy:
    def __init__(self, env, checkpoint: Path, policy: str):
        self.recipe, self.model, self.normalizer, self.metadata = load_for_env(checkpoint, env, OpenVlaOftRecipe if policy == "openvla-oft" else OpenVlaRecipe)
        self.robot, self.action_dim = env.robot.name, env.robot.action_dim
        camera_for(self.robot)
        config = self.recipe.config
        self.execute_steps = config.chunk
        self.autoregressive = config.mode == AUTOREGRESSIVE
        self.tokenizer = action_tokenizer(config, self.normalizer) if self.autoregressive else None
        self.bounds = percentiles(self.normalizer, "action")

    def reset(self, task: str, seed: int) -> None:
        """Nothing to reset: decoding is greedy and the regression head deterministic."""

    def act(self, obs: dict) -> np.ndarray:
        batch = self.recipe.batch([obs], [self.robot], {self.robot: self.normalizer})
        with torch.inference_mode():
            if self.autoregressive:
                tokens = self.model.decode(batch, self.action_dim)[0].numpy()
                return self.tokenizer.decode(tokens)[None]
            chunk = self.model.predict_chunk(batch)[0, :, : self.action_dim].numpy()
        return from_unit(chunk, *self.bounds)


def make_openvla(env, checkpoint: str | Path | None = None) -> OpenVlaPolicy:
    return OpenVlaPolicy(env, resolve(checkpoint, "openvla-small", "openvla"), "openvla")


def make_openvla_oft(env, checkpoint: str | Path | None = None) -> OpenVlaPolicy:
    return OpenVlaPolicy(env, resolve(checkpoint, "openvla-oft-small", "openvla-oft"), "openvla-oft")
