"""Policy checkpoints: safetensors weights + a JSON config, never pickles.

A checkpoint directory holds `config.json` ({"policy", "model", "normalizers", "step", ...})
and `model.safetensors` (the EMA weights a policy is evaluated with). Training adds
`train_state.safetensors` (raw weights and AdamW moments) and `train_state.json` so a run
resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pi0bench.errors import UserError

def save(directory: Path, config: dict, weights: dict[str, torch.Tensor],
         train_state: tuple[dict[str, torch.Tensor], dict] | None = None,
         dtype: torch.dtype | None = None) -> None:
    """Write a checkpoint atomically (a killed save never leaves a half checkpoint)."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
               for k, v in weights.items()}
    save_file(tensors, str(tmp / "model.safetensors"))
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    if train_state is not None:
        save_file({k: v.contiguous() for k, v in train_state[0].items()}, str(tmp / "train_state.safetensors"))
        (tmp / "train_state.json").write_text(json.dumps(train_state[1]))
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)


def read_config(directory: Path) -> dict:
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise UserError(f"{directory} is not a checkpoint: config.json is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg}); the checkpoint is damaged") from None


def load_weights(module: torch.nn.Module, path: Path) -> None:
    """Load safetensors into `module`, failing on the first missing, unexpected or misshaped
    key with one line that names it."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    expected = module.state_dict()
    for key in expected:
        if key not in tensors:
            raise UserError(f"{path}: missing key {key!r}")
        if tuple(tensors[key].shape) != tuple(expected[key].shape):
            raise UserError(f"{path}: key {key!r} has shape {tuple(tensors[key].shape)}, "
                            f"the model expects {tuple(expected[key].shape)}")
    for key in tensors:
        if key not in expected:
            raise UserError(f"{path}: unexpected key {key!r}")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})


def weights_sha256(directory: Path) -> str:
    """The sha256 of a checkpoint's weights file: what names the exact weights a run used."""
    return hashlib.sha256((Path(directory) / "model.safetensors").read_bytes()).hexdigest()


def weights_digest(directory: Path) -> str:
    """The short name of a checkpoint's weights (12 hex digits of their sha256) that a loaded
    policy reports in its metadata and every episode it plays records."""
    return weights_sha256(directory)[:12]


def check_fits(directory: Path, policy: str, robot: str) -> dict:
    """The config of a checkpoint that must be `policy`'s and drive `robot`: a checkpoint of
    another family, or trained on another robot, is one clear error. Reads config.json only."""
    config = read_config(directory)
    if config.get("policy") != policy:
        raise UserError(f"{directory} is a {config.get('policy')!r} checkpoint, not a {policy!r} one")
    if robot not in config.get("normalizers", {}):
        raise UserError(f"checkpoint {directory} was trained on {', '.join(config.get('normalizers', {})) or 'no robot'}, "
                        f"not on the {robot} robot of this task")
    return config


def load_policy_model(directory: Path, recipe_class, config: dict | None = None):
    """(recipe, model in eval mode, config dict) from a checkpoint of the family whose recipe
    class (policies/base.py `Recipe`) the caller hands in; a checkpoint of another family is
    one clear error."""
    if config is None:
        config = read_config(directory)
        if config.get("policy") != recipe_class.name:
            raise UserError(f"{directory} is a {config.get('policy')!r} checkpoint, not a {recipe_class.name!r} one")
    recipe = recipe_class.from_dict(config["model"], Path(directory))
    model = recipe.build()
    load_weights(model, Path(directory) / "model.safetensors")
    return recipe, model.eval(), config


# Where default checkpoints are found: the folders in $PI0BENCH_CHECKPOINTS (os.pathsep-
# separated), then a source checkout's results/checkpoints. An installed package has no
# results/ beside it, so there the variable is how its defaults are found.
SEARCH_PATH_VARIABLE = "PI0BENCH_CHECKPOINTS"
CHECKOUT_CHECKPOINTS = Path(__file__).resolve().parents[1] / "results" / "checkpoints"


def search_path() -> list[Path]:
    folders = [Path(p) for p in os.environ.get(SEARCH_PATH_VARIABLE, "").split(os.pathsep) if p]
    return folders + ([CHECKOUT_CHECKPOINTS] if CHECKOUT_CHECKPOINTS.is_dir() else [])


def resolve(checkpoint: str | Path | None, default: str, policy: str) -> Path:
    """The checkpoint a policy loads: `checkpoint` when given (it must exist), else the first
    folder of the search path that holds `default`; one line saying where it looked if none."""
    if checkpoint:
        require(Path(checkpoint), policy)
        return Path(checkpoint)
    folders = search_path()
    for folder in folders:
        if (folder / default / "config.json").is_file():
            return folder / default
    looked = ", ".join(str(f) for f in folders) or f"nowhere (${SEARCH_PATH_VARIABLE} is unset and this is no checkout)"
    raise UserError(f"no {policy} checkpoint {default!r}: looked in {looked}; set {SEARCH_PATH_VARIABLE}=DIR "
                    f"(a folder holding {default}/), train one with `pi0bench train --policy {policy}`, "
                    "or pass --checkpoint DIR")


def require(path: Path, policy: str) -> None:
    """A policy's checkpoint directory must exist before anything is built around it."""
    if not (Path(path) / "config.json").is_file():
        raise UserError(f"no {policy} checkpoint at {path}; train one with `pi0bench train --policy {policy}` "
                        "or pass --checkpoint DIR")


def load_for_env(directory: Path, description, recipe_class, device: str = "cpu"):
    """(recipe, model on `device`, normalizer, metadata) of a checkpoint that must drive the
    robot of the env `description` (an EnvDescription) describes; the checkpoint and the device
    are checked before any weight is read."""
    from pi0bench.normalize import Normalizer
    from pi0bench.policies.device import CPU, torch_device

    target = torch_device(device)
    config = check_fits(directory, recipe_class.name, description.robot)
    recipe, model, config = load_policy_model(directory, recipe_class, config)
    metadata = {"name": recipe_class.name, "version": recipe.config.name, "checkpoint": weights_digest(directory),
                **({"device": str(target)} if target.type != CPU else {})}
    model.to(target)
    return recipe, model, Normalizer.from_dict(config["normalizers"][description.robot]), metadata
