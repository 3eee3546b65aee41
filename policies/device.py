"""Where a learned policy's model runs (`--device`): the CPU by default, a GPU when torch sees
one. Inputs are built on the CPU (images, states, the episode-seeded noise), moved to the
model's device for the forward pass, and the chunk comes back to the CPU, so the noise an
episode draws is the same on every device."""

from __future__ import annotations

from typing import Any

import torch

from pi0bench.errors import UserError

CPU = "cpu"
KINDS = ("cpu", "cuda", "mps")


def torch_device(name: str) -> torch.device:
    """The torch device `name` names, checked before any weight is loaded onto it: an unknown
    name, or a GPU torch cannot see, is one line saying what is available."""
    try:
        device = torch.device(str(name))
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in KINDS:
        raise UserError(f"unknown --device {name!r}; choose cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {name}: torch sees no CUDA GPU here (torch {torch.__version__}, "
                            f"cuda build {torch.version.cuda or 'none'}); use --device cpu")
        if device.index is not None and device.index >= count:
            raise UserError(f"--device {name}: torch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: torch sees no Apple MPS device here; use --device cpu")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's weights are on."""
    return next(model.parameters()).device


def to_device(value: Any, device: torch.device) -> Any:
    """A tensor (or a dict or list of them, nested) on `device`; anything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(item, device) for item in value)
    return value
