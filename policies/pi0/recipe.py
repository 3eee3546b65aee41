"""What the shared training pipeline needs to know about π0: how to build it, how to turn
dataset windows into a batch, and its loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pi0bench.errors import UserError
from pi0bench.policies.pi0.config import CONFIGS, Pi0Config
from pi0bench.normalize import Normalizer
from pi0bench.policies.pi0.inputs import example, pad_vector, trim_prompt
from pi0bench.policies.base import RecipeBase
from pi0bench.policies.pi0.model import Pi0Model
from pi0bench.policies.pi0.tokenizer import ByteTokenizer, SentencePieceTokenizer


class Pi0Recipe(RecipeBase):
    name = "pi0"
    default_config = "pi0-small"
    configs = CONFIGS
    config_class = Pi0Config
    model_class = Pi0Model
    default_lr = 3e-4

    def __init__(self, config: Pi0Config, directory: Path | None = None):
        """`directory` holds the tokenizer.model of a sentencepiece config (its checkpoint)."""
        super().__init__(config)
        if config.tokenizer == "bytes":
            self.tokenizer = ByteTokenizer()
        elif directory is None:
            raise UserError(f"{config.name} needs PaliGemma's tokenizer.model; convert its weights "
                            "with `pi0bench convert-pi0`, which puts the tokenizer beside them")
        else:
            self.tokenizer = SentencePieceTokenizer(directory)

    @classmethod
    def from_dict(cls, data: dict, directory: Path | None = None) -> Pi0Recipe:
        return cls(Pi0Config.from_dict(data), directory)

    def for_datasets(self, infos: list[dict]) -> Pi0Recipe:
        """π0 pads every robot to 32 dims and reads the prompt, so one model fits all tasks."""
        return self

    def collate(self, samples: list[dict], normalizers: dict[str, Normalizer]) -> dict:
        """Dataset windows (with a `robot` key) -> a training batch."""
        cfg = self.config
        examples, actions, weights = [], [], []
        for s in samples:
            norm = normalizers[s["robot"]]
            examples.append(example(list(s["images"].values()), s["state"].numpy(), s["prompt"], norm,
                                    self.tokenizer, cfg.vision.image_size, cfg.max_prompt_tokens,
                                    cfg.action_dim))
            raw = norm.action(s["action"].numpy())
            actions.append(np.stack([pad_vector(a, cfg.action_dim) for a in raw]))
            weight = np.zeros((cfg.horizon, cfg.action_dim), np.float32)
            weight[:, : raw.shape[1]] = 1.0
            weight[s["action_is_pad"].numpy()] = 0.0
            weights.append(weight)
        batch = {k: torch.stack([e[k] for e in examples]) for k in examples[0]}
        batch["actions"] = torch.from_numpy(np.stack(actions))
        batch["action_weight"] = torch.from_numpy(np.stack(weights))
        return trim_prompt(batch)

    @staticmethod
    def loss(model: Pi0Model, batch: dict) -> torch.Tensor:
        return model.loss(batch)
