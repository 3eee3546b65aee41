"""What ACT and Diffusion Policy share: they are trained per task (no language input, as in
the paper's comparison) on one robot's dataset, so their input sizes come from that dataset,
and they read camera images as [0, 1] floats at a fixed square size."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from pi0bench.errors import UserError
from pi0bench.normalize import Normalizer
from pi0bench.policies.base import RecipeBase


@dataclass(frozen=True)
class PerTaskConfig:
    """The sizes a per-task policy takes from its training dataset (0 until then)."""

    state_dim: int = 0
    action_dim: int = 0
    cameras: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**data)


class PerTaskRecipe(RecipeBase):
    """The training-pipeline side shared by ACT and DP; subclasses name their config and
    model classes and turn windows into model inputs."""

    name: str
    default_config: str

    def for_datasets(self, infos: list[dict]):
        return type(self)(replace(self.config, **dataset_dims(infos, self.name)))

    @staticmethod
    def targets(samples: list[dict], normalizers: dict[str, Normalizer]) -> dict:
        """The z-scored action chunks of a batch and their padding masks."""
        actions = np.stack([normalizers[s["robot"]].action(s["action"].numpy()) for s in samples])
        return {"actions": torch.from_numpy(actions.astype(np.float32)),
                "action_is_pad": torch.stack([s["action_is_pad"] for s in samples])}

    @staticmethod
    def loss(model, batch: dict) -> torch.Tensor:
        return model.loss(batch)


def dataset_dims(infos: list[dict], policy: str) -> dict:
    """state_dim, action_dim and camera count of the dataset(s) a per-task policy trains on."""
    robots = {info["robot_type"] for info in infos}
    if len(robots) != 1 or len(infos) != 1:
        raise UserError(f"{policy} has no language input and is trained per task: give exactly one --data "
                        "dataset (one task)")
    features = infos[0]["features"]
    return {"state_dim": features["observation.state"]["shape"][0],
            "action_dim": features["action"]["shape"][0],
            "cameras": sum(1 for f in features.values() if f["dtype"] == "video")}


def unit_images(images: list, size: int) -> torch.Tensor:
    """HxWx3 uint8 camera images -> [cameras, 3, size, size] floats in [0, 1]."""
    x = torch.stack([torch.as_tensor(np.asarray(image)) for image in images]).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x
