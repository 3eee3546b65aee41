"""Octo: the block-wise attention rules (as a matrix and as behaviour), the Octo-Small
parameter count, Octo's DDPM, learning, checkpoints, multi-robot training, and episodes
through the real rollout loop."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import check_replanning_window, seeded_model
from test_baselines import loss_falls
from test_pi0 import synthetic_dataset

from pi0bench.errors import UserError
from pi0bench.policies.octo.config import OCTO_SMALL, OCTO_TINY
from pi0bench.policies.octo.model import OBSERVATION, READOUT, TASK, OctoModel, noise_scheduler
from pi0bench.registry import recipe_class

TINY = replace(OCTO_TINY, name="tiny", width=32, depth=2, heads=2, mlp=64, image_sizes=(16, 16, 16),
               stem_features=(8, 8), patch_features=16, max_prompt_tokens=12, text_width=16, text_depth=1,
               text_heads=2, head_hidden=32, head_blocks=2, state_dim=8, action_dim=8)
PER_CAMERA = 16  # (16 px / 4 px patches)² tokens


def make_batch(cfg=TINY, b=2, seed=0, cameras=(True, True, False)) -> dict:
    g = torch.Generator().manual_seed(seed)
    token_mask = torch.ones(b, cfg.max_prompt_tokens, dtype=torch.bool)
    token_mask[-1, 7:] = False
    return {
        "images": [torch.rand(b, cfg.window, 3, s, s, generator=g) * 2 - 1 for s in cfg.image_sizes],
        "image_mask": torch.tensor([cameras] * b),
        "tokens": torch.randint(4, 200, (b, cfg.max_prompt_tokens), generator=g), "token_mask": token_mask,
        "state": torch.randn(b, cfg.window, cfg.state_dim, generator=g),
        "actions": torch.randn(b, cfg.horizon, cfg.action_dim, generator=g),
        "action_weight": torch.ones(b, cfg.horizon, cfg.action_dim),
    }


@pytest.fixture(scope="module")
def model():
    return seeded_model(OctoModel, TINY)


def test_token_layout_is_task_first_then_each_timestep():
    kinds, times = OctoModel(TINY).layout(2)
    per_step = 3 * PER_CAMERA + 1 + TINY.readout_tokens  # cameras, proprio, readout
    assert len(kinds) == TINY.max_prompt_tokens + 2 * per_step
    assert (kinds[: TINY.max_prompt_tokens] == TASK).all() and (times[: TINY.max_prompt_tokens] == -1).all()
    for t in range(2):
        block = slice(TINY.max_prompt_tokens + t * per_step, TINY.max_prompt_tokens + (t + 1) * per_step)
        assert (times[block] == t).all()
        assert kinds[block].tolist() == [OBSERVATION] * (per_step - 1) + [READOUT]


def test_attention_matrix_follows_octos_rules():
    kinds, times = OctoModel(TINY).layout(2)
    allowed = OctoModel.attention_rule(kinds, times)
    for q in range(len(kinds)):
        for k in range(len(kinds)):
            qk, kk, qt, kt = int(kinds[q]), int(kinds[k]), int(times[q]), int(times[k])
            if qk == TASK:
                expected = kk == TASK  # the prompt sees only the prompt
            elif qk == OBSERVATION:
                expected = kk == TASK or (kk == OBSERVATION and kt <= qt)  # never a readout, never the future
            else:
                expected = kk == TASK or kt <= qt  # own and earlier observations and readouts
            assert bool(allowed[q, k]) == expected, (q, k)
    observation, readout = kinds == OBSERVATION, kinds == READOUT
    assert not allowed[observation][:, readout].any()
    assert not (allowed & (times[None, :] > times[:, None])).any()  # no token sees a later timestep


def hidden(model, batch, readout_noise=None):
    tokens, valid = model.embed(batch)
    if readout_noise is not None:
        kinds, _ = model.layout(TINY.window)
        tokens = tokens.clone()
        tokens[:, kinds == READOUT] += readout_noise
    with torch.no_grad():
        return model.forward_tokens(tokens, valid)


def test_perturbing_readouts_or_the_future_never_changes_earlier_observations(model):
    kinds, times = model.layout(TINY.window)
    not_readout = kinds != READOUT
    base_batch = make_batch()
    base = hidden(model, base_batch)

    g = torch.Generator().manual_seed(1)
    # random, not constant: the pre-norm LayerNorm would erase a constant shift
    noise = torch.randn(2, TINY.window * TINY.readout_tokens, TINY.width, generator=g)
    perturbed = hidden(model, base_batch, readout_noise=noise)
    torch.testing.assert_close(perturbed[:, not_readout], base[:, not_readout])  # nothing reads the readouts
    assert not torch.allclose(perturbed[:, kinds == READOUT], base[:, kinds == READOUT])

    future = dict(base_batch, state=base_batch["state"].clone(), images=[x.clone() for x in base_batch["images"]])
    future["state"][:, 1] += 1.0
    future["images"][0][:, 1] = -future["images"][0][:, 1]
    changed = hidden(model, future)
    torch.testing.assert_close(changed[:, times < 1], base[:, times < 1])  # task, t=0 observations and readout
    assert not torch.allclose(changed[:, times == 1], base[:, times == 1])

    past = dict(base_batch, state=base_batch["state"].clone())
    past["state"][:, 0] += 1.0
    earlier = hidden(model, past)
    assert not torch.allclose(earlier[:, -1], base[:, -1])  # the last readout sees t=0
    torch.testing.assert_close(earlier[:, kinds == TASK], base[:, kinds == TASK])  # the task sees no robot
    prompt = dict(base_batch, tokens=base_batch["tokens"].flip(1))
    assert not torch.allclose(hidden(model, prompt)[:, kinds == OBSERVATION], base[:, kinds == OBSERVATION])


def test_a_missing_camera_slot_is_invisible(model):
    batch = make_batch()
    other = dict(batch, images=[batch["images"][0], batch["images"][1], torch.rand_like(batch["images"][2])])
    kinds, _ = model.layout(TINY.window)
    slot2 = torch.zeros(len(kinds), dtype=torch.bool)
    start = TINY.max_prompt_tokens
    for t in range(TINY.window):
        first = start + t * model.tokens_per_step + 2 * PER_CAMERA
        slot2[first:first + PER_CAMERA] = True
    torch.testing.assert_close(hidden(model, other)[:, ~slot2], hidden(model, batch)[:, ~slot2])


def test_octo_small_has_the_papers_27m_parameters():
    """Octo-Small is 27M parameters (transformer, image stems, projections, position
    embeddings, diffusion head; the frozen T5-Base excluded). Ours adds a third camera slot
    (bimanual robots have three cameras) and a learned byte-level text encoder."""
    with torch.device("meta"):
        small = OctoModel(replace(OCTO_SMALL, state_dim=8, action_dim=7))

    def count(*prefixes: str) -> int:
        return sum(p.numel() for n, p in small.named_parameters() if n.startswith(prefixes))

    total = count("")
    third_slot = count("stems.2.", "camera_projections.2.", "camera_positions.2")
    comparable = total - third_slot - count("text_encoder.")
    assert 2.6e7 < comparable < 2.8e7  # 26.9M measured
    assert 2.0e7 < count("transformer.") < 2.2e7  # 12 x ViT-S blocks
    assert 2.9e7 < total < 3.1e7  # 30.0M measured


def test_noise_schedule_and_step_are_octos_ddpm():
    scheduler = noise_scheduler(OCTO_SMALL)
    steps, s = 20, 0.008
    t = torch.linspace(0, steps, steps + 1, dtype=torch.float64) / steps
    alpha_bar = torch.cos((t + s) / (1 + s) * torch.pi / 2) ** 2
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(0, 0.999)  # Octo's cosine schedule
    torch.testing.assert_close(scheduler.betas.double(), betas, atol=1e-6, rtol=1e-5)

    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    scheduler.set_timesteps(steps)
    alphas, alpha_hats = 1 - scheduler.betas, scheduler.alphas_cumprod
    for step in (19, 7, 0):
        out = scheduler.step(eps, torch.tensor(step), x, generator=torch.Generator().manual_seed(step)).prev_sample
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(step))
        noise_term = (step > 0) * scheduler.betas[step].sqrt() * z
        x0 = (x - (1 - alpha_hats[step]).sqrt() * eps) / alpha_hats[step].sqrt()
        if x0.abs().max() <= OCTO_SMALL.max_action:  # Octo's update, where the clip is idle
            expected = (x - (1 - alphas[step]) / (1 - alpha_hats[step]).sqrt() * eps) / alphas[step].sqrt()
        else:  # the posterior mean from the clipped clean-chunk estimate
            assert step == 19
            before = alpha_hats[step - 1]
            expected = (before.sqrt() * scheduler.betas[step] * x0.clamp(-5, 5)
                        + alphas[step].sqrt() * (1 - before) * x) / (1 - alpha_hats[step])
        torch.testing.assert_close(out, expected + noise_term, atol=1e-5, rtol=1e-5)


def test_sampling_is_fixed_by_noise_and_generator_and_clipped(model):
    batch = make_batch()
    noise, mask = torch.randn(2, TINY.horizon, TINY.action_dim), torch.ones(2, TINY.action_dim, dtype=torch.bool)
    a = model.sample(batch, noise, mask, torch.Generator().manual_seed(1))
    b = model.sample(batch, noise, mask, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, model.sample(batch, noise, mask, torch.Generator().manual_seed(2)))
    assert a.shape == (2, TINY.horizon, TINY.action_dim) and a.abs().max() <= TINY.max_action


def test_loss_falls_on_a_tiny_dataset():
    """Four examples, each seen under 8 noise draws a step; the loss is measured before and
    after with one fixed set of draws."""
    torch.manual_seed(0)
    model = OctoModel(TINY)
    small = make_batch(b=4)
    data = {k: ([x.repeat(8, 1, 1, 1, 1) for x in v] if k == "images" else v.repeat(8, *([1] * (v.dim() - 1))))
            for k, v in small.items()}
    assert loss_falls(model, data, steps=100)


def _normalizer(dim: int) -> dict:
    zeros, ones = [0.0] * dim, [1.0] * dim
    return {"state_mean": zeros, "state_std": ones, "action_mean": zeros, "action_std": ones}


def _checkpoint(tmp_path, cfg=TINY) -> str:
    from pi0bench import checkpoint

    torch.manual_seed(0)
    config = {"policy": "octo", "model": cfg.to_dict(), "step": 0,
              "normalizers": {"franka": _normalizer(8), "aloha": _normalizer(14)}}
    checkpoint.save(tmp_path / "octo", config, OctoModel(cfg).state_dict())
    return str(tmp_path / "octo")


def test_checkpoint_round_trip(tmp_path, model):
    from pi0bench import checkpoint

    config = {"policy": "octo", "model": TINY.to_dict(), "normalizers": {}, "step": 0}
    checkpoint.save(tmp_path / "ckpt", config, model.state_dict())
    _, loaded, read = checkpoint.load_policy_model(tmp_path / "ckpt", recipe_class("octo"))
    assert read["model"]["image_sizes"] == [16, 16, 16]
    batch, noise = make_batch(), torch.randn(2, TINY.horizon, TINY.action_dim)
    mask = torch.ones(2, TINY.action_dim, dtype=torch.bool)
    torch.testing.assert_close(loaded.sample(batch, noise, mask, torch.Generator().manual_seed(0)),
                               model.sample(batch, noise, mask, torch.Generator().manual_seed(0)))


def aloha_dataset(root, episodes=2, length=20):
    from pi0bench.lerobot_dataset import LeRobotWriter

    names = [f"j{i}" for i in range(14)]
    cameras = ("cam_high", "cam_left_wrist", "cam_right_wrist")
    writer = LeRobotWriter(root, fps=50.0, robot_type="aloha", cameras=cameras, image_size=16,
                           state_names=names, action_names=names)
    rng = np.random.default_rng(1)
    for e in range(episodes):
        t = np.arange(length)[:, None] / length
        states = list((np.cos(t * 2 + e + np.arange(14)) * 0.3).astype(np.float32))
        actions = list((np.cos(t * 2 + e + 0.1 + np.arange(14)) * 0.3).astype(np.float32))
        frames = {c: [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(length)] for c in cameras}
        writer.add_episode(frames, states, actions, task="fold the towel")
    writer.close()
    return root


@pytest.mark.usefixtures("onednn_off")
def test_one_model_trains_on_both_robots(tmp_path, monkeypatch):
    """The Franka (8 dims, 2 cameras) and the bimanual robot (14 dims, 3 cameras) share one
    model: states and actions are padded to 14 with zero loss weight, the third camera slot is
    masked for the Franka."""
    from pi0bench.lerobot_dataset import DemoDataset, robot_normalizers
    from pi0bench.normalize import Normalizer
    from pi0bench.registry import recipe_class
    from pi0bench.train import TrainConfig, train

    monkeypatch.setitem(recipe_class("octo").configs, "tiny", replace(TINY, state_dim=0, action_dim=0))
    data = [synthetic_dataset(tmp_path / "franka"), aloha_dataset(tmp_path / "aloha")]
    final = train(TrainConfig(policy="octo", data=data, out=tmp_path / "run", model="tiny", steps=2,
                              batch_size=4, warmup=1))
    config = json.loads((final / "config.json").read_text())
    assert config["model"]["state_dim"] == config["model"]["action_dim"] == 14  # the larger robot's
    assert set(config["normalizers"]) == {"franka", "aloha"}

    recipe = recipe_class("octo").from_dict(config["model"])
    samples = [dict(DemoDataset(root, chunk=recipe.chunk, history=recipe.history)[0], robot=robot)
               for root, robot in zip(data, ("franka", "aloha"))]
    normalizers = {r: Normalizer.from_dict(d) for r, d in robot_normalizers(data).items()}
    batch = recipe.collate(samples, normalizers)
    assert batch["image_mask"].tolist() == [[True, True, False], [True, True, True]]
    assert batch["state"].shape == (2, TINY.window, 14) and (batch["state"][0, :, 8:] == 0).all()
    assert batch["action_weight"][0, :, :8].all() and not batch["action_weight"][0, :, 8:].any()
    assert batch["action_weight"][1].all()
    torch.testing.assert_close(batch["state"][:, 0], batch["state"][:, 1])  # the first frame stands in for t-1


@pytest.fixture
def drawer_env():
    from pi0bench.envs.task_env import TaskEnv

    env = TaskEnv("drawer_tidy", image_size=32)
    yield env
    env.close()


def test_policy_keeps_a_two_frame_window_and_replays_its_seed(tmp_path, drawer_env):
    from pi0bench.registry import make_policy

    policy = make_policy("octo", drawer_env, _checkpoint(tmp_path))
    check_replanning_window(policy, drawer_env, queued=TINY.horizon - 1)


def test_the_same_checkpoint_drives_the_bimanual_robot(tmp_path):
    from pi0bench.envs.task_env import TaskEnv
    from pi0bench.registry import make_policy

    env = TaskEnv("paper_towel_replace", image_size=32)
    policy = make_policy("octo", env, _checkpoint(tmp_path, replace(TINY, state_dim=14, action_dim=14)))
    obs, _ = env.reset(seed=0)
    policy.reset("paper_towel_replace", 0)
    assert policy.act(obs).shape == (1, 14)
    env.close()


def test_missing_checkpoint_is_one_clear_line(tmp_path, drawer_env):
    from pi0bench.registry import make_policy

    with pytest.raises(UserError, match="no octo checkpoint at .*train one with `pi0bench train --policy octo`"):
        make_policy("octo", drawer_env, str(tmp_path / "nowhere"))


def test_episode_through_the_real_loop_replays_exactly(tmp_path, drawer_env):
    from pi0bench.registry import make_policy
    from pi0bench.rollout import run_episode

    agent = make_policy("octo", drawer_env, _checkpoint(tmp_path))
    record = run_episode(drawer_env, agent, task="drawer_tidy", policy_name="octo", seed=0, episode=0)
    assert record.error == "" and record.steps == drawer_env.max_steps
    final_pose = drawer_env.data.qpos.copy()
    again = run_episode(drawer_env, agent, task="drawer_tidy", policy_name="octo", seed=0, episode=0)
    assert again.final_state_sha == record.final_state_sha
    np.testing.assert_array_equal(drawer_env.data.qpos, final_pose)  # every action replayed exactly
