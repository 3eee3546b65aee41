"""What the shared training pipeline needs to know about Diffusion Policy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pi0bench.normalize import Normalizer
from pi0bench.policies.dp.config import CONFIGS, DpConfig
from pi0bench.policies.dp.model import DpModel
from pi0bench.policies.visuomotor import dataset_dims, unit_images


class DpRecipe:
    name = "dp"
    default_config = "dp-small"
    configs = CONFIGS

    def __init__(self, config: DpConfig):
        self.config = config

    @classmethod
    def from_name(cls, name: str) -> DpRecipe:
        return cls(CONFIGS[name])

    @classmethod
    def from_dict(cls, data: dict, directory: Path | None = None) -> DpRecipe:
        return cls(DpConfig.from_dict(data))

    def for_datasets(self, infos: list[dict]) -> DpRecipe:
        return DpRecipe(replace(self.config, **dataset_dims(infos, self.name)))

    def config_dict(self) -> dict:
        return self.config.to_dict()

    @property
    def history(self) -> int:
        return self.config.obs_steps

    @property
    def chunk(self) -> int:
        return self.config.horizon

    @property
    def default_lr(self) -> float:
        return self.config.lr

    def build(self) -> DpModel:
        return DpModel(self.config)

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
        batch["actions"] = torch.from_numpy(np.stack([normalizers[s["robot"]].action(s["action"].numpy())
                                                      for s in samples]).astype(np.float32))
        batch["action_is_pad"] = torch.stack([s["action_is_pad"] for s in samples])
        return batch

    @staticmethod
    def loss(model: DpModel, batch: dict) -> torch.Tensor:
        return model.loss(batch)
