"""What the shared training pipeline needs to know about ACT."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pi0bench.normalize import Normalizer
from pi0bench.policies.act.config import CONFIGS, ActConfig
from pi0bench.policies.act.model import ActModel
from pi0bench.policies.visuomotor import dataset_dims, unit_images


class ActRecipe:
    name = "act"
    default_config = "act-small"
    configs = CONFIGS
    history = 1  # observation frames a window carries

    def __init__(self, config: ActConfig):
        self.config = config

    @classmethod
    def from_name(cls, name: str) -> ActRecipe:
        return cls(CONFIGS[name])

    @classmethod
    def from_dict(cls, data: dict, directory: Path | None = None) -> ActRecipe:
        return cls(ActConfig.from_dict(data))

    def for_datasets(self, infos: list[dict]) -> ActRecipe:
        return ActRecipe(replace(self.config, **dataset_dims(infos, self.name)))

    def config_dict(self) -> dict:
        return self.config.to_dict()

    @property
    def chunk(self) -> int:
        return self.config.chunk

    @property
    def default_lr(self) -> float:
        return self.config.lr

    def build(self) -> ActModel:
        return ActModel(self.config)

    def observation(self, images: list, state: np.ndarray, normalizer: Normalizer) -> dict:
        return {"images": unit_images(images, self.config.image_size),
                "state": torch.from_numpy(normalizer.state(np.asarray(state, np.float32)))}

    def collate(self, samples: list[dict], normalizers: dict[str, Normalizer]) -> dict:
        observations = [self.observation(list(s["images"].values()), s["state"].numpy(), normalizers[s["robot"]])
                        for s in samples]
        batch = {k: torch.stack([o[k] for o in observations]) for k in observations[0]}
        batch["actions"] = torch.from_numpy(np.stack([normalizers[s["robot"]].action(s["action"].numpy())
                                                      for s in samples]).astype(np.float32))
        batch["action_is_pad"] = torch.stack([s["action_is_pad"] for s in samples])
        return batch

    @staticmethod
    def loss(model: ActModel, batch: dict) -> torch.Tensor:
        return model.loss(batch)
