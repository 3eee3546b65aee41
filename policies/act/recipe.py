"""What the shared training pipeline needs to know about ACT."""

from __future__ import annotations

import numpy as np
import torch

from pi0bench.normalize import Normalizer
from pi0bench.policies.act.config import CONFIGS, ActConfig
from pi0bench.policies.act.model import ActModel
from pi0bench.policies.visuomotor import PerTaskRecipe, unit_images


class ActRecipe(PerTaskRecipe):
    name = "act"
    default_config = "act-small"
    configs = CONFIGS
    config_class = ActConfig
    model_class = ActModel

    def observation(self, images: list, state: np.ndarray, normalizer: Normalizer) -> dict:
        return {"images": unit_images(images, self.config.image_size),
                "state": torch.from_numpy(normalizer.state(np.asarray(state, np.float32)))}

    def collate(self, samples: list[dict], normalizers: dict[str, Normalizer]) -> dict:
        observations = [self.observation(list(s["images"].values()), s["state"].numpy(), normalizers[s["robot"]])
                        for s in samples]
        batch = {k: torch.stack([o[k] for o in observations]) for k in observations[0]}
        return batch | self.targets(samples, normalizers)
