"""What the shared training pipeline needs to know about OpenVLA and OpenVLA-OFT: how to build
them, how to turn dataset windows (or an observation) into a batch, and their loss.

Like π0 they read the prompt, so one model learns every task of every robot: the
autoregressive model decodes as many tokens as the robot has action dims, and OFT's action
slots are as wide as the widest robot (narrower robots' extra dims are zero and unscored).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from pi0bench.errors import UserError
from pi0bench.lerobot_dataset import widest_dims
from pi0bench.normalize import Normalizer
from pi0bench.policies.base import RecipeBase
from pi0bench.policies.openvla.action_tokenizer import ActionTokenizer, to_unit
from pi0bench.policies.openvla.config import AUTOREGRESSIVE, CONFIGS, OFT, OFT_CONFIGS, OpenVlaConfig
from pi0bench.policies.openvla.inputs import camera_for, left_pad, pixels, sequence, third_person_image
from pi0bench.policies.openvla.model import OpenVlaModel
from pi0bench.policies.pi0.inputs import pad_vector
from pi0bench.policies.pi0.tokenizer import ByteTokenizer


def percentiles(normalizer: Normalizer, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A robot's 1st and 99th percentiles of its actions or states."""
    q01, q99 = getattr(normalizer, f"{kind}_q01"), getattr(normalizer, f"{kind}_q99")
    if q01 is None or q99 is None:
        raise UserError(f"openvla needs the 1st/99th percentiles of the {kind}s (q01/q99 in the "
                        "datasets' meta/stats.json); record the demos again with `pi0bench demos`")
    return q01, q99


def action_tokenizer(config: OpenVlaConfig, normalizer: Normalizer) -> ActionTokenizer:
    return ActionTokenizer(*percentiles(normalizer, "action"), config.vocab_size, config.bins)


class OpenVlaRecipe(RecipeBase):
    name = "openvla"
    mode = AUTOREGRESSIVE
    default_config = "openvla-small"
    configs = CONFIGS
    config_class = OpenVlaConfig
    model_class = OpenVlaModel

    def __init__(self, config: OpenVlaConfig):
        if config.mode != self.mode:
            raise UserError(f"{config.name} is an {config.mode} config, not one for {self.name}")
        if config.tokenizer != "bytes":
            raise UserError(f"{config.name} needs Llama-2's tokenizer and weights, which pi0bench does not ship; "
                            "it is built only to count its parameters: train openvla-small instead")
        super().__init__(config)
        self.tokenizer = ByteTokenizer()

    def for_datasets(self, infos: list[dict]):
        """Check every robot's third-person camera is recorded; OFT sizes its action slots
        and proprio input to the widest robot."""
        for info in infos:
            camera = camera_for(info["robot_type"])
            if f"observation.images.{camera}" not in info["features"]:
                raise UserError(f"openvla reads the {camera} camera of the {info['robot_type']} robot, "
                                "which a dataset does not record; record it with `pi0bench demos`")
        if self.config.mode != OFT:
            return self
        return type(self)(replace(self.config, **widest_dims(infos)))

    def batch(self, observations: list[dict], robots: list[str], normalizers: dict[str, Normalizer],
              actions: list[np.ndarray] | None = None, action_is_pad: list[np.ndarray] | None = None) -> dict:
        """Model inputs for observations ({"images", "state", "prompt"}) of the given robots;
        with `actions` (each [chunk, D]) also the training targets."""
        cfg = self.config
        sequences, images, states, targets, weights = [], [], [], [], []
        for i, (obs, robot) in enumerate(zip(observations, robots)):
            norm = normalizers[robot]
            images.append(pixels(third_person_image(obs["images"], robot), cfg.image_size))
            if cfg.mode == AUTOREGRESSIVE:
                tokens = None if actions is None else action_tokenizer(cfg, norm).encode(actions[i][0])
                sequences.append(sequence(cfg, self.tokenizer, obs["prompt"], tokens))
                continue
            sequences.append(sequence(cfg, self.tokenizer, obs["prompt"]))
            states.append(pad_vector(to_unit(np.asarray(obs["state"], np.float32), *percentiles(norm, "state")),
                                     cfg.state_dim))
            if actions is not None:
                unit = to_unit(actions[i], *percentiles(norm, "action"))
                target = np.zeros((cfg.chunk, cfg.action_dim), np.float32)
                target[:, : unit.shape[1]] = unit
                weight = np.zeros_like(target)
                weight[:, : unit.shape[1]] = 1.0
                weight[action_is_pad[i]] = 0.0
                targets.append(target)
                weights.append(weight)
        batch = left_pad(sequences) | {"pixels": torch.stack(images)}
        if states:
            batch["state"] = torch.from_numpy(np.stack(states))
        if targets:
            batch["actions"] = torch.from_numpy(np.stack(targets))
            batch["action_weight"] = torch.from_numpy(np.stack(weights))
        return batch

    def collate(self, samples: list[dict], normalizers: dict[str, Normalizer]) -> dict:
        """Dataset windows (with a `robot` key) -> a training batch."""
        observations = [{"images": {c: v.numpy() for c, v in s["images"].items()}, "state": s["state"].numpy(),
                         "prompt": s["prompt"]} for s in samples]
        return self.batch(observations, [s["robot"] for s in samples], normalizers,
                          [s["action"].numpy() for s in samples], [s["action_is_pad"].numpy() for s in samples])

    @staticmethod
    def loss(model: OpenVlaModel, batch: dict) -> torch.Tensor:
        return model.loss(batch)


class OpenVlaOftRecipe(OpenVlaRecipe):
    name = "openvla-oft"
    mode = OFT
    default_config = "openvla-oft-small"
    configs = OFT_CONFIGS
