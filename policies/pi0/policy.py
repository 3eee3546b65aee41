"""π0 as a policy the rollout loop can run: observation in, a chunk of joint targets out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pi0bench.checkpoint import load_for_env, require
from pi0bench.policies.pi0.inputs import example

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "results" / "checkpoints" / "pi0-small"
FLOW_STEPS = 10


class Pi0Policy:
    """Samples an H-step chunk with 10 Euler steps; the loop executes the first 25 at 50 Hz
    robots and 16 at 20 Hz robots (the paper's choice). The initial noise of each chunk comes
    from a generator seeded by the episode seed, so an episode replays exactly."""

    def __init__(self, env, checkpoint: Path):
        self.recipe, self.model, self.normalizer, self.metadata = load_for_env(checkpoint, env, "pi0")
        self.action_dim = env.robot.action_dim
        self.execute_steps = 25 if env.robot.control_hz >= 50 else 16
        self._generator = torch.Generator().manual_seed(0)

    def reset(self, task: str, seed: int) -> None:
        self._generator = torch.Generator().manual_seed(int(seed))

    def act(self, obs: dict) -> np.ndarray:
        cfg = self.recipe.config
        inputs = example(list(obs["images"].values()), obs["state"], obs["prompt"], self.normalizer,
                         self.recipe.tokenizer, cfg.vision.image_size, cfg.max_prompt_tokens,
                         cfg.action_dim)
        batch = {k: v[None] for k, v in inputs.items()}
        noise = torch.randn((1, cfg.horizon, cfg.action_dim), generator=self._generator)
        with torch.inference_mode():
            chunk = self.model.sample(batch, steps=FLOW_STEPS, noise=noise)[0].numpy()
        return self.normalizer.unaction(chunk[:, : self.action_dim]).astype(np.float32)


def make_pi0(env, checkpoint: str | Path | None = None) -> Pi0Policy:
    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    require(path, "pi0")
    return Pi0Policy(env, path)
