"""Observations (from the env or a dataset) as OpenVLA token sequences.

One sequence per example, as Prismatic lays it out: BOS, the image's patch slots, the prompt
"In: What action should the robot take to {instruction}?\\nOut:", then the actions. The
autoregressive model's actions are D bin tokens (teacher-forced in training, decoded at
inference). OFT adds one proprio slot after the patches (as OFT appends its proprio token
to the patches) and ends with chunk × action_dim empty action slots and the stop token.
Sequences are padded on the left, so every example's last token sits in the same column
and decoding appends to all of them at once.

OpenVLA sees one third-person image: the Franka's exterior `base` camera and ALOHA's
overhead `cam_high`, each of which shows the whole workspace and both hands.
"""

from __future__ import annotations

import numpy as np
import torch

from pi0bench.errors import UserError
from pi0bench.policies.openvla.config import OFT, OpenVlaConfig
from pi0bench.policies.pi0.tokenizer import BOS, EOS, PAD
from pi0bench.policies.visuomotor import unit_images

PADDING, TEXT, IMAGE, PROPRIO, ACTION = range(5)  # what each position of a sequence holds
THIRD_PERSON = {"franka": "base", "aloha": "cam_high"}


def camera_for(robot: str) -> str:
    if robot not in THIRD_PERSON:
        raise UserError(f"openvla has no third-person camera for the {robot} robot; "
                        f"it knows {', '.join(THIRD_PERSON)}")
    return THIRD_PERSON[robot]


def third_person_image(images: dict, robot: str) -> np.ndarray:
    camera = camera_for(robot)
    if camera not in images:
        raise UserError(f"openvla reads the {camera} camera, which this run does not render "
                        f"(cameras: {', '.join(images) or 'none'}); add it with --cameras")
    return np.asarray(images[camera])


def prompt(instruction: str) -> str:
    return f"In: What action should the robot take to {instruction.strip().lower()}?\nOut:"


def sequence(cfg: OpenVlaConfig, tokenizer, instruction: str,
             action_tokens: np.ndarray | None = None) -> tuple[list[int], list[int]]:
    """(token ids, kinds) of one example; slots that receive embeddings from elsewhere hold PAD."""
    text = tokenizer.encode(prompt(instruction))[1:-1]  # BOS goes first, and the actions follow "Out:", not EOS
    ids, kinds = [BOS] + [PAD] * cfg.patches, [TEXT] + [IMAGE] * cfg.patches
    if cfg.mode == OFT:
        ids, kinds = ids + [PAD], kinds + [PROPRIO]
    ids, kinds = ids + text, kinds + [TEXT] * len(text)
    if cfg.mode == OFT:
        slots = cfg.chunk * cfg.action_dim
        ids, kinds = ids + [PAD] * slots + [EOS], kinds + [ACTION] * slots + [TEXT]
    elif action_tokens is not None:
        ids, kinds = ids + [int(t) for t in action_tokens], kinds + [ACTION] * len(action_tokens)
    return ids, kinds


def left_pad(sequences: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    length = max(len(ids) for ids, _ in sequences)
    tokens = torch.full((len(sequences), length), PAD, dtype=torch.long)
    kinds = torch.full((len(sequences), length), PADDING, dtype=torch.long)
    for row, (ids, kind) in enumerate(sequences):
        tokens[row, length - len(ids):] = torch.tensor(ids)
        kinds[row, length - len(kind):] = torch.tensor(kind)
    return {"tokens": tokens, "kinds": kinds}


def pixels(image: np.ndarray, size: int) -> torch.Tensor:
    """HxWx3 uint8 -> [3, size, size] in [0, 1]; each tower applies its own normalisation."""
    return unit_images([image], size)[0]
