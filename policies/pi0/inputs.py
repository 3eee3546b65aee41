"""Turning observations (from the env or a dataset) into π0's input tensors.

States and actions are z-scored with per-robot statistics (stored in the checkpoint) and
zero-padded to the model's 32 dims; images are resized to the vision tower's size, scaled to
[-1, 1] and padded to a fixed number of camera slots, with a mask for empty slots.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pi0bench.normalize import Normalizer
from pi0bench.policies.pi0.tokenizer import pad_tokens

CAMERA_SLOTS = 3


def image_tensor(images: list[np.ndarray | torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to CAMERA_SLOTS HxWx3 uint8 images -> [slots, 3, size, size] in [-1, 1] and a mask."""
    out = torch.zeros(CAMERA_SLOTS, 3, size, size)
    mask = torch.zeros(CAMERA_SLOTS, dtype=torch.bool)
    for i, image in enumerate(images[:CAMERA_SLOTS]):
        x = torch.as_tensor(np.asarray(image)).permute(2, 0, 1).float()[None] / 127.5 - 1.0
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[i] = x[0]
        mask[i] = True
    return out, mask


def pad_vector(x: np.ndarray, dim: int) -> np.ndarray:
    out = np.zeros(dim, np.float32)
    out[: len(x)] = x
    return out


def example(images: list, state: np.ndarray, prompt: str, normalizer: Normalizer, tokenizer,
            image_size: int, max_tokens: int, action_dim: int) -> dict:
    """One example's model inputs (no batch dimension)."""
    pixels, image_mask = image_tensor(images, image_size)
    tokens, token_mask = pad_tokens(tokenizer.encode(prompt), max_tokens)
    return {
        "images": pixels, "image_mask": image_mask,
        "tokens": torch.from_numpy(tokens), "token_mask": torch.from_numpy(token_mask),
        "state": torch.from_numpy(pad_vector(normalizer.state(np.asarray(state, np.float32)), action_dim)),
    }


def trim_prompt(batch: dict) -> dict:
    """The batch without the prompt columns that are padding in every row. No query attends
    to a pad key and positions count valid tokens only, so the model's output is unchanged,
    while a 48-slot prompt of ~20 bytes costs the VLM ~20 tokens, not 48. Training batches
    only: at inference the cut would depend on which episodes share a batch, and a row's
    result must not (policies/base.py `act_batch`). Done on the host, since the cut depends
    on the data."""
    used = batch["token_mask"].any(0).nonzero()
    length = int(used.max()) + 1 if len(used) else 0
    return dict(batch, tokens=batch["tokens"][:, :length], token_mask=batch["token_mask"][:, :length])
