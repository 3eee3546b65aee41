"""Full-size π0 weights in the published PyTorch layout, read from a local directory.

The layout is the one of openpi's PyTorch port and of LeRobot's `pi0` policy: a directory with
`model.safetensors` (or shards listed in `model.safetensors.index.json`) whose keys look like

    paligemma_with_expert.paligemma.model.vision_tower.vision_model.<SigLIP keys>
    paligemma_with_expert.paligemma.model.multi_modal_projector.linear.{weight,bias}
    paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight
        (or only paligemma_with_expert.paligemma.lm_head.weight: the two are tied)
    paligemma_with_expert.paligemma.model.language_model.layers.<i>.<Gemma layer keys>
    paligemma_with_expert.paligemma.model.language_model.norm.weight
    paligemma_with_expert.gemma_expert.model.layers.<i>.<Gemma layer keys>
    paligemma_with_expert.gemma_expert.model.norm.weight
    state_proj, action_in_proj, action_time_mlp_in, action_time_mlp_out, action_out_proj

LeRobot prefixes every key with `model.`, and checkpoints saved with transformers < 4.52 spell
`paligemma.language_model.model.` / `paligemma.vision_tower.` /
`paligemma.multi_modal_projector.`; both are accepted. Keys this model has no use for (the
expert's unused embedding and LM head) are ignored; a missing or misshaped key is an error
naming it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers.models.gemma.modeling_gemma import GemmaRotaryEmbedding

from pi0bench import checkpoint
from pi0bench.errors import UserError
from pi0bench.lerobot_dataset import robot_normalizers
from pi0bench.policies.pi0.config import CONFIGS, Pi0Config
from pi0bench.policies.pi0.model import Pi0Model

VLM = "paligemma_with_expert.paligemma.model."
EXPERT = "paligemma_with_expert.gemma_expert.model."
TIED_EMBEDDING = "paligemma_with_expert.paligemma.lm_head.weight"
_OLD_SPELLINGS = {  # transformers < 4.52 nesting -> current nesting
    "paligemma_with_expert.paligemma.language_model.model.": VLM + "language_model.",
    "paligemma_with_expert.paligemma.vision_tower.": VLM + "vision_tower.",
    "paligemma_with_expert.paligemma.multi_modal_projector.": VLM + "multi_modal_projector.",
}


def published_key(key: str) -> str:
    """The published name of one of Pi0Model's parameters."""
    parts = key.split(".")
    if parts[0] == "vision_tower":
        return VLM + "vision_tower.vision_model." + ".".join(parts[1:])
    if parts[0] == "multi_modal_projector":
        return VLM + "multi_modal_projector.linear." + parts[1]
    if parts[0] == "embed_tokens":
        return VLM + "language_model.embed_tokens.weight"
    if parts[0] == "norms":
        return (VLM + "language_model." if parts[1] == "0" else EXPERT) + "norm.weight"
    if parts[0] == "layers":  # layers.<i>.groups.<g>.<name...>
        layer, group, rest = parts[1], parts[3], parts[4:]
        base = (VLM + "language_model." if group == "0" else EXPERT) + f"layers.{layer}."
        if rest[0] in ("q_proj", "k_proj", "v_proj", "o_proj"):
            return base + "self_attn." + ".".join(rest)
        return base + ".".join(rest)
    return key  # the action head's projections keep their names


def read_published(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a published checkpoint, under current-layout names without `model.`."""
    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (directory / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise UserError(f"no model.safetensors (or model.safetensors.index.json) in {directory}")
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        try:
            tensors.update(load_file(str(directory / name)))
        except (SafetensorError, OSError) as exc:
            raise UserError(f"cannot read {directory / name}: {exc}") from None
    return {_current_spelling(k.removeprefix("model.")): v for k, v in tensors.items()}


def _current_spelling(key: str) -> str:
    for old, new in _OLD_SPELLINGS.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def load_published(directory: Path, config: Pi0Config, dtype: torch.dtype = torch.float32) -> Pi0Model:
    """A Pi0Model of `config` holding the published weights in `directory`. The model is built
    on the meta device and takes the loaded tensors as its parameters, so a 3.3B model costs
    one copy of its weights in memory, not two."""
    tensors = read_published(directory)
    tensors.setdefault(VLM + "language_model.embed_tokens.weight", tensors.get(TIED_EMBEDDING))
    with torch.device("meta"):
        model = Pi0Model(config)
    ours = {}
    for key, param in model.state_dict().items():
        name = published_key(key)
        tensor = tensors.get(name)
        if tensor is None:
            raise UserError(f"{directory}: missing key {name!r} (needed for {key})")
        if tuple(tensor.shape) != tuple(param.shape):
            raise UserError(f"{directory}: key {name!r} has shape {tuple(tensor.shape)}, "
                            f"the {config.name} config expects {tuple(param.shape)}")
        ours[key] = tensor.to(dtype)
    model.load_state_dict(ours, assign=True)
    _rebuild_buffers(model, config)
    return model.eval()


def _rebuild_buffers(model: Pi0Model, config: Pi0Config) -> None:
    """The constant buffers (rotary frequencies, patch positions) are not in any checkpoint;
    compute them on the CPU in place of their meta-device placeholders."""
    model.rotary = GemmaRotaryEmbedding(config=model.rotary.config)
    embeddings = model.vision_tower.embeddings
    positions = (config.vision.image_size // config.vision.patch_size) ** 2
    embeddings.register_buffer("position_ids", torch.arange(positions)[None], persistent=False)


def model_config(name_or_file: str) -> Pi0Config:
    """A named config (pi0, pi0-small) or a Pi0Config written as JSON."""
    if name_or_file in CONFIGS:
        return CONFIGS[name_or_file]
    path = Path(name_or_file)
    if not path.is_file():
        raise UserError(f"--model {name_or_file!r} is neither a config name ({', '.join(CONFIGS)}) "
                        "nor a JSON file")
    try:
        return Pi0Config.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise UserError(f"{path} is not a Pi0Config JSON ({exc})") from None


def convert(source: Path, target: Path, config: Pi0Config, data: list[Path],
            tokenizer_dir: Path | None = None) -> None:
    """Write published weights as a pi0bench checkpoint (bf16), with the normalisation
    statistics of `data` (one dataset per task) and PaliGemma's tokenizer beside them."""
    if not data:
        raise UserError("give at least one --data dataset: the checkpoint needs its robots' statistics")
    tokenizer = Path(tokenizer_dir or source) / "tokenizer.model"
    if config.tokenizer == "sentencepiece" and not tokenizer.is_file():
        raise UserError(f"no tokenizer.model in {tokenizer.parent}: pass --tokenizer DIR holding "
                        "PaliGemma's tokenizer.model")
    normalizers = robot_normalizers(data)
    model = load_published(source, config, dtype=torch.bfloat16)
    meta = {"policy": "pi0", "model": config.to_dict(), "normalizers": normalizers, "step": 0,
            "source": str(source)}
    checkpoint.save(target, meta, model.state_dict())
    if config.tokenizer == "sentencepiece":
        shutil.copyfile(tokenizer, Path(target) / "tokenizer.model")
