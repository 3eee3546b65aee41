"""What the shared training pipeline needs to know about Diffusion Policy."""

from __future__ import annotations

import numpy as np
import torch

from pi0bench.normalize import Normalizer
from pi0bench.policies.dp.config import CONFIGS, DpConfig
from pi0bench.policies.dp.model import DpModel
from pi0bench.policies.visuomotor import PerTaskRecipe, unit_images


class DpRecipe(PerTaskRecipe):
    name = "dp"
    default_config = "dp-small"
    configs = CONFIGS
    config_class = DpConfig
    model_class = DpModel

    @property
    def history(self) -> int:
        return self.config.obs_steps

    def observation(self, frames: list[list], states: np.ndarray, normalizer: Normalizer) -> dict:
        """`frames[k]`: every camera's image at history step k (oldest first); `states`
        [obs_steps, S] -> images [obs_steps, C, 3, H, W] in [0, 1], z-scored states."""
        return {"images": torch.stack([unit_images(f, self.config.image_size) for f in frames]),
                "state": torch.from_numpy(normalizer.state(np.asarray(states, np.float32)))}

    def collate(self, samples: list[dict], normalizers: dict[str, Normalizer]) -> dict:
        observations = []
        for s in samples:
            per_camera = list(s["images"].values())  # each [obs_steps, H, W, 3]
            frames = [[camera[k] for camera in per_camera] for k in range(self.config.obs_steps)]
            observations.append(self.observation(frames, s["state"].numpy(), normalizers[s["robot"]]))
        batch = {k: torch.stack([o[k] for o in observations]) for k in observations[0]}
        return batch | self.targets(samples, normalizers)
