"""π0: attention-mask semantics, cached sampling, fixed noise, learning, checkpoints, the
full-size parameter count, training resume, and the policy inside the evaluation loop."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from pi0bench.errors import UserError
from pi0bench.policies.pi0.config import PI0, PI0_SMALL, Pi0Config, VisionConfig
from pi0bench.policies.pi0.model import Pi0Model
from pi0bench.registry import recipe_class
from conftest import seeded_model

TINY = replace(PI0_SMALL, name="tiny", width=32, depth=2, mlp=64, heads=2, head_dim=16, expert_width=16,
               expert_mlp=32, horizon=8, max_prompt_tokens=8, image_pool=1,
               vision=VisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, patch_size=8, image_size=16))


def make_batch(cfg=TINY, batch=2, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, 200, (batch, cfg.max_prompt_tokens), generator=g)
    token_mask = torch.ones(batch, cfg.max_prompt_tokens, dtype=torch.bool)
    token_mask[-1, 5:] = False
    size = cfg.vision.image_size
    return {
        "images": torch.rand(batch, 3, 3, size, size, generator=g) * 2 - 1,
        "image_mask": torch.tensor([[True, True, True]] * (batch - 1) + [[True, True, False]]),
        "tokens": tokens, "token_mask": token_mask,
        "state": torch.randn(batch, cfg.action_dim, generator=g),
        "actions": torch.randn(batch, cfg.horizon, cfg.action_dim, generator=g),
        "action_weight": torch.ones(batch, cfg.horizon, cfg.action_dim),
    }


@pytest.fixture(scope="module")
def model():
    return seeded_model(Pi0Model, TINY)


def hidden(model, batch, actions, t=0.5):
    prefix, valid = model.embed_prefix(batch["images"], batch["image_mask"], batch["tokens"], batch["token_mask"])
    suffix = model.embed_suffix(batch["state"], actions, torch.full((actions.shape[0],), t))
    with torch.no_grad():
        return model.forward_tokens(prefix, valid, suffix)


def test_prefix_and_state_never_see_the_actions(model):
    batch = make_batch()
    a = hidden(model, batch, torch.randn(2, TINY.horizon, 32))
    b = hidden(model, batch, torch.randn(2, TINY.horizon, 32))
    torch.testing.assert_close(a[0], b[0])  # prefix outputs unchanged
    torch.testing.assert_close(a[1][:, 0], b[1][:, 0])  # the state token too
    assert not torch.allclose(a[1][:, 1:], b[1][:, 1:])  # the action tokens do change


def test_actions_see_prefix_and_state(model):
    batch = make_batch()
    actions = torch.randn(2, TINY.horizon, 32)
    base = hidden(model, batch, actions)
    other_prompt = dict(batch, tokens=batch["tokens"].flip(1))
    other_state = dict(batch, state=batch["state"] + 1.0)
    assert not torch.allclose(base[1][:, 1:], hidden(model, other_prompt, actions)[1][:, 1:])
    assert not torch.allclose(base[1][:, 1:], hidden(model, other_state, actions)[1][:, 1:])
    # and the prefix does not see the state either
    torch.testing.assert_close(base[0], hidden(model, other_state, actions)[0])


def test_cached_sampling_equals_uncached(model):
    batch = make_batch()
    noise = torch.randn(2, TINY.horizon, 32)
    cached = model.sample(batch, noise=noise, use_cache=True)
    uncached = model.sample(batch, noise=noise, use_cache=False)
    torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=1e-4)


def test_fixed_noise_gives_identical_chunks(model):
    batch = make_batch()
    noise = torch.randn(2, TINY.horizon, 32)
    torch.testing.assert_close(model.sample(batch, noise=noise), model.sample(batch, noise=noise), atol=0, rtol=0)
    assert not torch.allclose(model.sample(batch, noise=noise), model.sample(batch, noise=noise + 1))


def test_trimming_the_prompt_padding_of_a_training_batch_changes_nothing(model):
    """Training batches drop the prompt columns that are padding in every row (a speed-up);
    the loss must be what it was, and a real token in the last column is kept."""
    from pi0bench.policies.pi0.inputs import trim_prompt

    batch = make_batch()
    wide = dict(batch, tokens=torch.cat([batch["tokens"], torch.zeros(2, 24, dtype=torch.long)], 1),
                token_mask=torch.cat([batch["token_mask"], torch.zeros(2, 24, dtype=torch.bool)], 1))
    trimmed = trim_prompt(wide)
    assert trimmed["tokens"].shape == (2, TINY.max_prompt_tokens)
    torch.testing.assert_close(trimmed["token_mask"], batch["token_mask"], atol=0, rtol=0)
    torch.testing.assert_close(trimmed["tokens"], wide["tokens"][:, : TINY.max_prompt_tokens], atol=0, rtol=0)
    assert all(trimmed[name] is wide[name] for name in ("images", "state", "actions"))
    with torch.no_grad():
        torch.manual_seed(3)
        full = model.loss(wide)
        torch.manual_seed(3)
        cut = model.loss(trimmed)
    torch.testing.assert_close(cut, full, atol=1e-6, rtol=1e-5)
    late = dict(wide, token_mask=wide["token_mask"].clone())
    late["token_mask"][0, -1] = True
    assert trim_prompt(late)["tokens"].shape[1] == TINY.max_prompt_tokens + 24


def test_image_pool_averages_neighbouring_patches_and_rejects_a_bad_factor():
    pooled_cfg = replace(TINY, image_pool=2)
    model = seeded_model(Pi0Model, pooled_cfg)
    grid = TINY.vision.image_size // TINY.vision.patch_size  # 2 x 2 patches -> 1 token
    patches = torch.arange(2 * grid * grid * 3, dtype=torch.float32).view(2, grid * grid, 3)
    pooled = model.pool_patches(patches)
    assert pooled.shape == (2, 1, 3)
    torch.testing.assert_close(pooled[:, 0], patches.mean(1))
    big = replace(pooled_cfg, vision=replace(TINY.vision, image_size=32))  # 4 x 4 -> 2 x 2
    patches = torch.randn(1, 16, 5)
    pooled = seeded_model(Pi0Model, big).pool_patches(patches)
    square = patches[0].view(4, 4, 5)
    torch.testing.assert_close(pooled[0, 1], square[0:2, 2:4].reshape(4, 5).mean(0))  # top-right
    torch.testing.assert_close(pooled[0, 2], square[2:4, 0:2].reshape(4, 5).mean(0))  # bottom-left
    batch = make_batch()
    prefix, _ = model.embed_prefix(batch["images"], batch["image_mask"], batch["tokens"], batch["token_mask"])
    assert prefix.shape[1] == 3 * 1 + TINY.max_prompt_tokens
    assert model.sample(batch).shape == (2, TINY.horizon, 32)
    with pytest.raises(UserError, match="image_pool 3 does not divide the 2 x 2 patch grid"):
        replace(TINY, image_pool=3)
    # pooling has no weights, so a checkpoint written before the field must say 1 by itself
    old = {k: v for k, v in PI0_SMALL.to_dict().items() if k != "image_pool"}
    assert Pi0Config.from_dict(old).image_pool == 1 and PI0_SMALL.image_pool == 2


def test_noise_draws_run_the_prefix_once_for_several_flow_samples(model):
    """With k draws the loss is the k-times-repeated batch's single-draw loss (the same ε and
    τ from the seeds), while the vision tower and the prefix run on the batch only once."""
    batch = make_batch()
    twice = {k: v.repeat(2, *[1] * (v.dim() - 1)) for k, v in batch.items()}
    drawing = seeded_model(Pi0Model, replace(TINY, noise_draws=2))
    images_seen = []
    hook = drawing.vision_tower.register_forward_hook(lambda module, args, output: images_seen.append(
        output.last_hidden_state.shape[0]))
    with torch.no_grad():
        torch.manual_seed(3)
        drawn = drawing.loss(batch, torch.Generator().manual_seed(4))
        hook.remove()
        torch.manual_seed(3)
        expected = model.loss(twice, torch.Generator().manual_seed(4))
        torch.manual_seed(3)
        one_draw = model.loss(batch, torch.Generator().manual_seed(4))
    torch.testing.assert_close(drawn, expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(one_draw, expected)
    assert images_seen == [2 * 3]  # 2 windows x 3 cameras, not 4 windows
    with pytest.raises(UserError, match="noise_draws must be at least 1"):
        replace(TINY, noise_draws=0)
    old = {k: v for k, v in PI0_SMALL.to_dict().items() if k != "noise_draws"}
    assert Pi0Config.from_dict(old).noise_draws == 1


def test_the_cached_prefix_gives_the_loss_of_the_joint_forward(model):
    """Training runs the prefix alone and the action expert against its cached keys and
    values; since the prefix never attends to the suffix, that must equal running both groups
    together."""
    batch = make_batch()
    actions = torch.randn(2, TINY.horizon, 32)
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        prefix, valid = model.embed_prefix(batch["images"], batch["image_mask"], batch["tokens"], batch["token_mask"])
        joint = model.velocity(prefix, valid, batch["state"], actions, t)
        cached = model.velocity(prefix, valid, batch["state"], actions, t, model.prefix_cache(prefix, valid))
    torch.testing.assert_close(cached, joint, atol=1e-5, rtol=1e-4)


def test_loss_falls_on_a_tiny_dataset():
    torch.manual_seed(0)
    model = Pi0Model(TINY)
    batch = make_batch(batch=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(200):
        torch.manual_seed(step)
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-20:]) < 0.75 * np.mean(losses[:20])  # 1.96 -> 1.20 measured


def test_full_size_config_has_about_3_3_billion_parameters():
    with torch.device("meta"):
        full = Pi0Model(PI0)
    count = sum(p.numel() for p in full.parameters())
    assert 3.1e9 < count < 3.5e9
    expert = sum(p.numel() for layer in full.layers for p in layer.groups[1].parameters())
    assert 2.5e8 < expert < 3.5e8  # the ~300M action expert


def test_checkpoint_round_trip_and_one_line_key_errors(model, tmp_path):
    from pi0bench import checkpoint

    config = {"policy": "pi0", "model": TINY.to_dict(), "normalizers": {}, "step": 0}
    checkpoint.save(tmp_path / "ckpt", config, model.state_dict())
    _, loaded, read = checkpoint.load_policy_model(tmp_path / "ckpt", recipe_class("pi0"))
    assert read["model"]["name"] == "tiny"
    batch = make_batch()
    noise = torch.randn(2, TINY.horizon, 32)
    torch.testing.assert_close(loaded.sample(batch, noise=noise), model.sample(batch, noise=noise))

    weights = model.state_dict()
    missing = {k: v for k, v in weights.items() if k != "action_out_proj.weight"}
    checkpoint.save(tmp_path / "bad", config, missing)
    with pytest.raises(UserError, match="missing key 'action_out_proj.weight'"):
        checkpoint.load_policy_model(tmp_path / "bad", recipe_class("pi0"))
    checkpoint.save(tmp_path / "bad", config, dict(weights, extra=torch.zeros(1)))
    with pytest.raises(UserError, match="unexpected key 'extra'"):
        checkpoint.load_policy_model(tmp_path / "bad", recipe_class("pi0"))
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        checkpoint.load_policy_model(tmp_path / "bad", recipe_class("pi0"))


def synthetic_dataset(root, episodes=3, length=30):
    from pi0bench.lerobot_dataset import LeRobotWriter

    names = [f"j{i}" for i in range(8)]
    writer = LeRobotWriter(root, fps=20.0, robot_type="franka", cameras=("base", "wrist"),
                           image_size=16, state_names=names, action_names=names)
    rng = np.random.default_rng(0)
    for e in range(episodes):
        t = np.arange(length)[:, None] / length
        states = list((np.sin(t * 3 + e + np.arange(8)) * 0.5).astype(np.float32))
        actions = list((np.sin(t * 3 + e + 0.1 + np.arange(8)) * 0.5).astype(np.float32))
        frames = {c: [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(length)]
                  for c in ("base", "wrist")}
        writer.add_episode(frames, states, actions, task="put the items in the drawer and close it")
    writer.close()
    return root


@pytest.mark.usefixtures("onednn_off")
def test_training_resumes_exactly_where_it_stopped(tmp_path, monkeypatch):
    from pi0bench.policies.pi0 import recipe as recipe_module
    from pi0bench.train import TrainConfig, train

    monkeypatch.setitem(recipe_module.CONFIGS, "tiny", TINY)
    data = synthetic_dataset(tmp_path / "data")
    common = dict(policy="pi0", data=[data], model="tiny", steps=4, batch_size=4, warmup=2, checkpoint_every=2)
    straight = train(TrainConfig(out=tmp_path / "a", **common))
    train(TrainConfig(out=tmp_path / "b", **dict(common, steps=2)))
    resumed = train(TrainConfig(out=tmp_path / "b", **common))
    from safetensors.torch import load_file

    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert (tmp_path / "a" / "loss.png").is_file()
    assert len((tmp_path / "b" / "losses.csv").read_text().strip().splitlines()) == 4
    config = json.loads((resumed / "config.json").read_text())
    assert set(config["normalizers"]) == {"franka"} and config["step"] == 4


def test_pi0_runs_in_the_evaluation_loop(tmp_path, monkeypatch):
    from pi0bench import checkpoint
    from pi0bench.envs.task_env import TaskEnv
    from pi0bench.normalize import Normalizer
    from pi0bench.registry import make_policy

    torch.manual_seed(0)
    zeros, ones = [0.0] * 8, [1.0] * 8
    norm = Normalizer.from_dict({"state_mean": zeros, "state_std": ones, "action_mean": zeros, "action_std": ones})
    config = {"policy": "pi0", "model": TINY.to_dict(), "normalizers": {"franka": norm.to_dict()}, "step": 0}
    checkpoint.save(tmp_path / "ckpt", config, Pi0Model(TINY).state_dict())
    env = TaskEnv("drawer_tidy", image_size=32)
    policy = make_policy("pi0", env, str(tmp_path / "ckpt"))
    assert policy.execute_steps == 16
    obs, _ = env.reset(seed=0)
    policy.reset("drawer_tidy", 7)
    first = policy.act(obs)
    policy.reset("drawer_tidy", 7)
    assert first.shape == (TINY.horizon, 8) and first.dtype == np.float32
    np.testing.assert_array_equal(first, policy.act(obs))  # same episode seed, same chunk
    towel = TaskEnv("towel_fold", cameras=())
    with pytest.raises(UserError, match="not on the aloha robot"):
        make_policy("pi0", towel, str(tmp_path / "ckpt"))
    env.close()
    towel.close()


def test_noise_scale_is_a_sampling_temperature(tiny_pi0_checkpoint):
    """noise_scale multiplies the initial noise: 0 gives the flow's centre whatever the episode
    seed; 0.5 equals sampling the model from half the seeded noise; out of [0, 1] is an error."""
    from pi0bench.envs.task_env import TaskEnv
    from pi0bench.registry import make_policy

    env = TaskEnv("drawer_tidy", image_size=32)
    obs, _ = env.reset(seed=0)
    centre = make_policy("pi0", env, str(tiny_pi0_checkpoint), {"noise_scale": 0.0})
    chunks = []
    for seed in (1, 2):
        centre.reset("drawer_tidy", seed)
        chunks.append(centre.act(obs))
    np.testing.assert_array_equal(chunks[0], chunks[1])
    sampled = make_policy("pi0", env, str(tiny_pi0_checkpoint))
    sampled.reset("drawer_tidy", 1)
    assert not np.allclose(sampled.act(obs), chunks[0], atol=1e-4)  # the seeded noise matters at 1

    half = make_policy("pi0", env, str(tiny_pi0_checkpoint), {"noise_scale": 0.5})
    half.reset("drawer_tidy", 3)
    horizon, dim = half.recipe.config.horizon, half.recipe.config.action_dim
    noise = 0.5 * torch.randn((1, horizon, dim), generator=torch.Generator().manual_seed(3))
    batch = {k: v[None] for k, v in half._inputs(obs).items()}
    expected = half._unaction(half.model.sample(batch, noise=noise)[0].numpy())
    np.testing.assert_allclose(half.act(obs), expected, rtol=1e-5, atol=1e-5)
    for bad in (-0.1, 1.5):
        with pytest.raises(UserError, match="noise_scale must be in"):
            make_policy("pi0", env, str(tiny_pi0_checkpoint), {"noise_scale": bad})
    env.close()


def test_batches_draw_each_dataset_equally_and_depend_only_on_seed_and_step():
    from pi0bench.train import batch_indices

    idx = batch_indices(0, 5, 4000, [1000, 10])
    small = (idx >= 1000).mean()
    assert 0.45 < small < 0.55 and idx.max() < 1010
    np.testing.assert_array_equal(idx, batch_indices(0, 5, 4000, [1000, 10]))
    assert not np.array_equal(idx, batch_indices(0, 6, 4000, [1000, 10]))


def test_tokenizers_work_offline(tmp_path):
    import sentencepiece

    from pi0bench.policies.pi0.tokenizer import BOS, EOS, ByteTokenizer, SentencePieceTokenizer, pad_tokens

    ids = ByteTokenizer().encode("Fold the towel")
    assert ids[0] == BOS and ids[-1] == EOS and len(ids) == len("fold the towel") + 2
    tokens, mask = pad_tokens(ids, 8)
    assert tokens.shape == (8,) and mask.all()

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["fold the towel", "replace the paper towel roll",
                                 "put the items in the drawer and close it"] * 50))
    sentencepiece.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "tokenizer"),
                                             vocab_size=28, bos_id=2, eos_id=1, pad_id=0, unk_id=3)
    sp = SentencePieceTokenizer(tmp_path)
    encoded = sp.encode("Fold the towel")
    assert encoded[0] == 2 and len(encoded) > 2 and max(encoded) < sp.vocab_size
    with pytest.raises(UserError, match="no tokenizer.model"):
        SentencePieceTokenizer(tmp_path / "nowhere")


def test_committed_pi0_small_checkpoint_is_the_default_and_acts():
    from pi0bench.checkpoint import CHECKOUT_CHECKPOINTS, resolve
    from pi0bench.envs.task_env import TaskEnv
    from pi0bench.registry import make_policy

    default = resolve(None, "pi0-small", "pi0")
    assert default == CHECKOUT_CHECKPOINTS / "pi0-small"
    assert sum(f.stat().st_size for f in default.iterdir()) <= 25e6
    config = json.loads((default / "config.json").read_text())
    assert set(config["normalizers"]) == {"franka", "aloha"} and config["model"]["name"] == "pi0-small"
    env = TaskEnv("towel_fold", image_size=64)
    policy = make_policy("pi0", env.description)
    obs, _ = env.reset(seed=0)
    policy.reset("towel_fold", 0)
    chunk = policy.act(obs)
    assert chunk.shape == (50, 14) and np.isfinite(chunk).all()
    env.close()
