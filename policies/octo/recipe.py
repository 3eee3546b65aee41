"""What the shared training pipeline needs to know about Octo: one model for every task and
robot (as π0), reading a window of observation frames (as Diffusion Policy)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from pi0bench.errors import UserError
from pi0bench.lerobot_dataset import widest_dims
from pi0bench.normalize import Normalizer
from pi0bench.policies.octo.config import CONFIGS, OctoConfig
from pi0bench.policies.base import RecipeBase
from pi0bench.policies.octo.model import OctoModel
from pi0bench.policies.pi0.inputs import pad_vector
from pi0bench.policies.pi0.tokenizer import ByteTokenizer, pad_tokens
from pi0bench.policies.visuomotor import unit_images


class OctoRecipe(RecipeBase):
    name = "octo"
    default_config = "octo-tiny"
    configs = CONFIGS
    config_class = OctoConfig
    model_class = OctoModel

    def __init__(self, config: OctoConfig):
        super().__init__(config)
        self.tokenizer = ByteTokenizer()

    def for_datasets(self, infos: list[dict]) -> OctoRecipe:
        """Size the state, action and camera inputs for the largest robot among the datasets;
        smaller robots are zero-padded and masked."""
        slots = len(self.config.image_sizes)
        for info in infos:
            cameras = sum(1 for f in info["features"].values() if f["dtype"] == "video")
            if cameras > slots:
                raise UserError(f"a {info['robot_type']} dataset has {cameras} cameras but {self.config.name} "
                                f"has {slots} camera slots; record the demos with at most {slots} cameras")
        return type(self)(replace(self.config, **widest_dims(infos)))

    @property
    def history(self) -> int:
        """Observation frames a window carries (the first repeated before an episode starts)."""
        return self.config.window

    def observation(self, cameras: list[np.ndarray], states: np.ndarray, prompt: str,
                    normalizer: Normalizer) -> dict:
        """One window's model inputs (no batch dimension). `cameras[i]`: camera i's frames
        [window, H, W, 3] uint8, oldest first; `states` [window, S]. Images go to [-1, 1] at
        their slot's size; empty slots are zeros with a False mask."""
        cfg = self.config
        images, mask = [], torch.zeros(len(cfg.image_sizes), dtype=torch.bool)
        for slot, size in enumerate(cfg.image_sizes):
            if slot < len(cameras):
                images.append(unit_images(list(cameras[slot]), size) * 2.0 - 1.0)
                mask[slot] = True
            else:
                images.append(torch.zeros(cfg.window, 3, size, size))
        tokens, token_mask = pad_tokens(self.tokenizer.encode(prompt), cfg.max_prompt_tokens)
        z = normalizer.state(np.asarray(states, np.float32))
        return {"images": images, "image_mask": mask,
                "tokens": torch.from_numpy(tokens), "token_mask": torch.from_numpy(token_mask),
                "state": torch.from_numpy(np.stack([pad_vector(s, cfg.state_dim) for s in z]))}

    def targets(self, actions: np.ndarray, is_pad: np.ndarray, normalizer: Normalizer) -> dict:
        """A z-scored chunk padded to action_dim, and the weight of each entry in the loss:
        1 on the robot's own dims of rows inside the episode, 0 elsewhere."""
        cfg = self.config
        raw = normalizer.action(np.asarray(actions, np.float32))
        weight = np.zeros((cfg.horizon, cfg.action_dim), np.float32)
        weight[:, : raw.shape[1]] = 1.0
        weight[np.asarray(is_pad)] = 0.0
        return {"actions": torch.from_numpy(np.stack([pad_vector(a, cfg.action_dim) for a in raw])),
                "action_weight": torch.from_numpy(weight)}

    @staticmethod
    def batch(examples: list[dict]) -> dict:
        """Stack examples along a new batch dimension (images slot by slot)."""
        out = {k: torch.stack([e[k] for e in examples]) for k in examples[0] if k != "images"}
        out["images"] = [torch.stack(slot) for slot in zip(*(e["images"] for e in examples))]
        return out

    def collate(self, samples: list[dict], normalizers: dict[str, Normalizer]) -> dict:
        """Dataset windows (with a `robot` key) -> a training batch."""
        window, examples = self.config.window, []
        for s in samples:
            norm = normalizers[s["robot"]]
            cameras = [c.numpy().reshape(window, *c.shape[-3:]) for c in s["images"].values()]
            states = s["state"].numpy().reshape(window, -1)
            example = self.observation(cameras, states, s["prompt"], norm)
            examples.append(example | self.targets(s["action"].numpy(), s["action_is_pad"].numpy(), norm))
        return self.batch(examples)

    @staticmethod
    def loss(model: OctoModel, batch: dict) -> torch.Tensor:
        return model.loss(batch)
