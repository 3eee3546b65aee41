"""Full-size π0 weights in the published PyTorch layout (openpi's port, LeRobot): a scaled-down
checkpoint with the same key names, written here key by key, loads, converts into a checkpoint
that `eval` runs, and a missing or misshaped key is one clear error."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_pi0 import TINY, make_batch, synthetic_dataset

from pi0bench.errors import UserError
from pi0bench.policies.pi0.model import Pi0Model
from pi0bench.policies.pi0.published import load_published
from conftest import seeded_model

VLM = "paligemma_with_expert.paligemma.model."
EXPERT = "paligemma_with_expert.gemma_expert.model."
TINY_SP = replace(TINY, name="tiny-sp", tokenizer="sentencepiece", vocab_size=28)


def published_state(m: Pi0Model) -> dict[str, torch.Tensor]:
    """The model's weights under the published names, spelled out independently of the loader.
    The embedding appears only as the tied LM head, as in openpi's files."""
    out = {f"{VLM}vision_tower.vision_model.{k}": v for k, v in m.vision_tower.state_dict().items()}
    out[f"{VLM}multi_modal_projector.linear.weight"] = m.multi_modal_projector.weight
    out[f"{VLM}multi_modal_projector.linear.bias"] = m.multi_modal_projector.bias
    out["paligemma_with_expert.paligemma.lm_head.weight"] = m.embed_tokens.weight
    for i, layer in enumerate(m.layers):
        for group, base in ((layer.groups[0], f"{VLM}language_model.layers.{i}."), (layer.groups[1], f"{EXPERT}layers.{i}.")):
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                out[f"{base}self_attn.{name}.weight"] = getattr(group, name).weight
            for name in ("gate_proj", "up_proj", "down_proj"):
                out[f"{base}mlp.{name}.weight"] = getattr(group.mlp, name).weight
            out[f"{base}input_layernorm.weight"] = group.input_layernorm.weight
            out[f"{base}post_attention_layernorm.weight"] = group.post_attention_layernorm.weight
    out[f"{VLM}language_model.norm.weight"] = m.norms[0].weight
    out[f"{EXPERT}norm.weight"] = m.norms[1].weight
    for name in ("state_proj", "action_in_proj", "action_time_mlp_in", "action_time_mlp_out", "action_out_proj"):
        out[f"{name}.weight"], out[f"{name}.bias"] = getattr(m, name).weight, getattr(m, name).bias
    out["paligemma_with_expert.gemma_expert.lm_head.weight"] = torch.zeros(5, 16)  # unused by π0
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def write_tokenizer(directory) -> None:
    import sentencepiece

    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(["fold the towel", "replace the paper towel roll",
                                 "put the items in the drawer and close it"] * 50))
    sentencepiece.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(directory / "tokenizer"),
                                             vocab_size=28, bos_id=2, eos_id=1, pad_id=0, unk_id=3)


@pytest.fixture(scope="module")
def original():
    return seeded_model(Pi0Model, TINY_SP)


def test_published_layout_loads_to_the_same_network(original, tmp_path):
    save_file(published_state(original), str(tmp_path / "model.safetensors"))
    loaded = load_published(tmp_path, TINY_SP)
    batch = make_batch(TINY_SP)
    batch["tokens"] = batch["tokens"] % TINY_SP.vocab_size
    noise = torch.randn(2, TINY_SP.horizon, TINY_SP.action_dim)
    torch.testing.assert_close(loaded.sample(batch, noise=noise), original.sample(batch, noise=noise))


def test_lerobot_prefix_and_old_transformers_nesting_are_accepted(original, tmp_path):
    renamed = {}
    for key, value in published_state(original).items():
        key = key.replace(f"{VLM}language_model.", "paligemma_with_expert.paligemma.language_model.model.")
        key = key.replace(f"{VLM}vision_tower.", "paligemma_with_expert.paligemma.vision_tower.")
        renamed["model." + key] = value
    save_file(renamed, str(tmp_path / "model.safetensors"))
    loaded = load_published(tmp_path, TINY_SP)
    torch.testing.assert_close(loaded.layers[1].groups[1].q_proj.weight, original.layers[1].groups[1].q_proj.weight)


def test_missing_or_misshaped_key_is_one_line_naming_it(original, tmp_path):
    state = published_state(original)
    key = f"{EXPERT}layers.1.self_attn.k_proj.weight"
    save_file({k: v for k, v in state.items() if k != key}, str(tmp_path / "model.safetensors"))
    with pytest.raises(UserError, match=f"missing key '{key}'"):
        load_published(tmp_path, TINY_SP)
    save_file(dict(state, **{key: torch.zeros(3, 3)}), str(tmp_path / "model.safetensors"))
    with pytest.raises(UserError, match=r"has shape \(3, 3\)"):
        load_published(tmp_path, TINY_SP)
    with pytest.raises(UserError, match="no model.safetensors"):
        load_published(tmp_path / "empty", TINY_SP)


def test_converted_checkpoint_runs_as_the_pi0_policy(original, tmp_path):
    import json

    from typer.testing import CliRunner

    from pi0bench.cli import app
    from pi0bench.envs.task_env import TaskEnv
    from pi0bench.registry import make_policy

    source = tmp_path / "published"
    source.mkdir()
    save_file(published_state(original), str(source / "model.safetensors"))
    write_tokenizer(source)
    (tmp_path / "tiny.json").write_text(json.dumps(TINY_SP.to_dict()))
    data = synthetic_dataset(tmp_path / "data")
    result = CliRunner().invoke(app, ["convert-pi0", str(source), str(tmp_path / "ckpt"), "--data", str(data),
                                      "--model", str(tmp_path / "tiny.json")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ckpt" / "tokenizer.model").is_file()
    env = TaskEnv("drawer_tidy", image_size=32)
    policy = make_policy("pi0", env, str(tmp_path / "ckpt"))
    assert type(policy.recipe.tokenizer).__name__ == "SentencePieceTokenizer"
    obs, _ = env.reset(seed=0)
    policy.reset("drawer_tidy", 0)
    chunk = policy.act(obs)
    assert chunk.shape == (TINY_SP.horizon, 8) and np.isfinite(chunk).all()
    env.close()
