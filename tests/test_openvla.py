"""OpenVLA and OpenVLA-OFT: the action tokenizer, constrained greedy decoding, a loss on action
tokens only, learning in both modes, the 7B shape, checkpoints, the training pipeline on
two robots, and whole episodes through the real loop."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_baselines import SHORT_EPISODE
from test_pi0 import synthetic_dataset

from pi0bench.errors import UserError
from pi0bench.normalize import Normalizer, merge_stats
from pi0bench.policies.openvla.action_tokenizer import ActionTokenizer, to_unit
from pi0bench.policies.openvla.config import OFT, OPENVLA_7B, OPENVLA_SMALL, TowerConfig
from pi0bench.policies.openvla.inputs import ACTION, IMAGE, PROPRIO, left_pad, sequence
from pi0bench.policies.openvla.model import OpenVlaModel
from pi0bench.policies.openvla.recipe import OpenVlaOftRecipe, OpenVlaRecipe
from pi0bench.registry import recipe_class
from conftest import seeded_model

TINY = replace(OPENVLA_SMALL, name="tiny-openvla", image_size=16, patch_size=8,
               siglip=TowerConfig(width=16, mlp=32, layers=1, heads=2), dino=TowerConfig(width=16, mlp=32, layers=1, heads=2),
               width=32, depth=2, mlp=64, heads=2)
TINY_OFT = replace(TINY, name="tiny-openvla-oft", mode=OFT, chunk=4, action_dim=14, state_dim=14)
PROMPTS = {"franka": "put the items in the drawer and close it", "aloha": "fold the towel"}
CAMERAS = {"franka": ("base", "wrist"), "aloha": ("cam_high", "cam_left_wrist", "cam_right_wrist")}


def normalizer(dim: int, seed: int = 0) -> Normalizer:
    rng = np.random.default_rng(seed)
    q01 = rng.uniform(-2.0, 0.0, dim)
    zeros, ones = [0.0] * dim, [1.0] * dim
    return Normalizer.from_dict({"state_mean": zeros, "state_std": ones, "action_mean": zeros, "action_std": ones,
                                 "state_q01": q01.tolist(), "state_q99": (q01 + 2.0).tolist(),
                                 "action_q01": q01.tolist(), "action_q99": (q01 + rng.uniform(0.5, 3.0, dim)).tolist()})


NORMALIZERS = {"franka": normalizer(8), "aloha": normalizer(14, seed=1)}


def observation(robot: str, rng: np.random.Generator) -> dict:
    dim = 8 if robot == "franka" else 14
    return {"images": {c: rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for c in CAMERAS[robot]},
            "state": rng.uniform(-1, 1, dim).astype(np.float32), "prompt": PROMPTS[robot]}


def make_batch(recipe, robots=("franka", "aloha"), seed=0, with_actions=True) -> dict:
    rng = np.random.default_rng(seed)
    observations = [observation(r, rng) for r in robots]
    if not with_actions:
        return recipe.batch(observations, list(robots), NORMALIZERS)
    chunk = recipe.config.chunk
    actions = [rng.uniform(NORMALIZERS[r].action_q01, NORMALIZERS[r].action_q99, (chunk, len(NORMALIZERS[r].action_q01)))
               .astype(np.float32) for r in robots]
    pads = [np.zeros(chunk, bool) for _ in robots]
    pads[0][-1:] = chunk > 1
    return recipe.batch(observations, list(robots), NORMALIZERS, actions, pads)


# -- the action tokenizer ------------------------------------------------------------------
def test_tokenizer_round_trip_is_within_half_a_bin():
    norm = NORMALIZERS["aloha"]
    tokenizer = ActionTokenizer(norm.action_q01, norm.action_q99, vocab_size=516)
    rng = np.random.default_rng(0)
    actions = rng.uniform(norm.action_q01, norm.action_q99, (2000, 14)).astype(np.float32)
    tokens = tokenizer.encode(actions)
    assert tokens.min() >= 516 - 256 and tokens.max() <= 515  # the last 256 ids
    half_bin = (norm.action_q99 - norm.action_q01) / 512
    error = np.abs(tokenizer.decode(tokens) - actions)
    assert np.all(error <= half_bin * (1 + 1e-4))
    assert error.max(0).min() > 0.8 * half_bin.min()  # and not much tighter: these are bins of that width
    # the lowest bin is the last id, as in the release
    assert tokenizer.encode(norm.action_q01)[0] == 515 and tokenizer.encode(norm.action_q99)[0] == 260


def test_tokenizer_clips_at_the_1st_and_99th_percentiles():
    norm = NORMALIZERS["franka"]
    tokenizer = ActionTokenizer(norm.action_q01, norm.action_q99, vocab_size=516)
    span = norm.action_q99 - norm.action_q01
    below, above = norm.action_q01 - span, norm.action_q99 + 5.0
    np.testing.assert_array_equal(tokenizer.encode(below), tokenizer.encode(norm.action_q01))
    np.testing.assert_array_equal(tokenizer.encode(above), tokenizer.encode(norm.action_q99))
    np.testing.assert_allclose(tokenizer.decode(tokenizer.encode(below)), norm.action_q01 + span / 512, rtol=1e-5)
    np.testing.assert_allclose(tokenizer.decode(tokenizer.encode(above)), norm.action_q99 - span / 512, rtol=1e-5)
    assert to_unit(below, norm.action_q01, norm.action_q99).min() == -1.0
    with pytest.raises(ValueError, match="outside the last 256"):
        tokenizer.decode(np.array([259]))


def test_percentiles_of_one_robot_pool_to_the_widest_range():
    def stats(q01, q99, count):
        entry = {"mean": [0.0], "std": [1.0], "count": [count], "q01": [q01], "q99": [q99]}
        return {"observation.state": entry, "action": entry}

    merged = merge_stats([stats(-1.0, 0.5, 10), stats(-0.2, 2.0, 30)])
    assert merged["action_q01"] == [-1.0] and merged["action_q99"] == [2.0]
    assert Normalizer.from_dict(merged).action_q99.tolist() == [2.0]


# -- the model -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    return seeded_model(OpenVlaModel, TINY)


@pytest.mark.parametrize("robot,dim", [("franka", 8), ("aloha", 14)])
def test_decoding_gives_exactly_d_action_tokens(model, robot, dim):
    """Greedy decoding with the cache, prompts of two lengths padded on the left, gives D ids
    from the action range, and the same ids a full teacher-forced pass picks at each position."""
    recipe = OpenVlaRecipe(TINY)
    other = "aloha" if robot == "franka" else "franka"
    batch = make_batch(recipe, (robot, other), with_actions=False)
    tokens = model.decode(batch, dim)
    assert tokens.shape == (2, dim)
    assert tokens.min() >= TINY.vocab_size - 256 and tokens.max() < TINY.vocab_size
    full = left_pad([sequence(TINY, recipe.tokenizer, PROMPTS[r], t.numpy()) for r, t in zip((robot, other), tokens)])
    full["pixels"] = batch["pixels"]
    with torch.no_grad():
        h = model.hidden(full)
    before_action = full["kinds"][:, 1:] == ACTION
    chosen = model.action_logits(h[:, :-1][before_action]).argmax(-1) + TINY.vocab_size - 256
    torch.testing.assert_close(chosen.view(2, dim), tokens)


def test_sequences_follow_the_prompt_format_and_score_only_action_tokens(model):
    recipe = OpenVlaRecipe(TINY)
    batch = make_batch(recipe)
    kinds, tokens = batch["kinds"], batch["tokens"]
    assert (kinds == ACTION).sum(1).tolist() == [8, 14] and (kinds == IMAGE).sum(1).tolist() == [TINY.patches] * 2
    assert (kinds[:, -8:] == ACTION).all()  # actions close every (left-padded) sequence
    text = bytes(int(t) - 4 for t, k in zip(tokens[1], kinds[1]) if k == 1 and t >= 4).decode()
    assert text == "in: what action should the robot take to fold the towel?\nout:"
    # the loss is Hugging Face's shifted cross-entropy with every label but the actions ignored
    labels = torch.where(kinds == ACTION, tokens, torch.full_like(tokens, -100))
    with torch.no_grad():
        logits = model.lm_head(model.hidden(batch))
        expected = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        torch.testing.assert_close(model.loss(batch), expected)


def test_oft_sequences_have_empty_action_slots_and_attend_both_ways():
    torch.manual_seed(0)
    model = OpenVlaModel(TINY_OFT).eval()
    batch = make_batch(OpenVlaOftRecipe(TINY_OFT))
    kinds = batch["kinds"]
    assert (kinds == ACTION).sum(1).tolist() == [TINY_OFT.chunk * 14] * 2 and (kinds == PROPRIO).sum(1).tolist() == [1, 1]
    assert batch["actions"].shape == (2, TINY_OFT.chunk, 14)
    assert batch["action_weight"][0, :, 8:].sum() == 0 and batch["action_weight"][0, -1].sum() == 0  # franka's 8 dims
    slots = model.embed(batch)[kinds == ACTION]
    assert torch.count_nonzero(slots) == 0
    with torch.no_grad():  # the first slot sees the slots after it (bidirectional attention)
        a = model.hidden(batch)
        changed = dict(batch, state=batch["state"] + 1.0)
        b = model.hidden(changed)
    first_text = (kinds[0] == 1).nonzero()[0, 0]
    assert not torch.allclose(a[0, first_text], b[0, first_text])  # even BOS sees the proprio token after it
    assert model.predict_chunk(batch).shape == (2, TINY_OFT.chunk, 14)


@pytest.mark.parametrize("recipe_class,config", [(OpenVlaRecipe, TINY), (OpenVlaOftRecipe, TINY_OFT)])
def test_loss_falls_on_a_tiny_set(recipe_class, config):
    torch.manual_seed(0)
    recipe = recipe_class(config)
    model = recipe.build()
    batch = make_batch(recipe, ("franka", "aloha", "franka", "aloha"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(150):
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # L1 first settles on each dim's median (~0.48 on these uniform targets), then fits: 0.58 -> 0.10
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_7b_shape_has_about_7_5_billion_parameters():
    with torch.device("meta"):
        full = OpenVlaModel(OPENVLA_7B)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert 7.3e9 < count(full) < 7.7e9
    assert 6.6e9 < count(full.llm) + count(full.lm_head) < 6.8e9  # Llama-2 7B
    assert count(full.projector) == 2176 * 8704 + 8704 + 8704 * 4096 + 4096 + 4096 * 4096 + 4096  # fused 3-layer MLP
    assert 6.5e8 < count(full.vision) < 7.2e8  # SigLIP So400m + DINOv2 ViT-L, less the unused last layers
    assert full.vision.width == 1024 + 1152 and OPENVLA_7B.patches == 256
    with pytest.raises(UserError, match="does not ship"):
        OpenVlaRecipe(OPENVLA_7B)


# -- checkpoints, training, episodes -----------------------------------------------------
def save_checkpoint(tmp_path, policy: str, config, robots=("franka",)) -> str:
    from pi0bench import checkpoint

    torch.manual_seed(0)
    meta = {"policy": policy, "model": config.to_dict(), "step": 0,
            "normalizers": {r: NORMALIZERS[r].to_dict() for r in robots}}
    checkpoint.save(tmp_path / policy, meta, OpenVlaModel(config).state_dict())
    return str(tmp_path / policy)


def test_checkpoints_round_trip(tmp_path):
    from pi0bench.checkpoint import load_policy_model

    for policy, config in (("openvla", TINY), ("openvla-oft", TINY_OFT)):
        path = save_checkpoint(tmp_path, policy, config)
        recipe, loaded, _ = load_policy_model(path, recipe_class(policy))
        torch.manual_seed(0)
        original = OpenVlaModel(config).eval()
        assert recipe.config == config
        batch = make_batch(recipe, with_actions=False)
        if policy == "openvla":
            torch.testing.assert_close(loaded.decode(batch, 14), original.decode(batch, 14))
        else:
            with torch.no_grad():
                torch.testing.assert_close(loaded.predict_chunk(batch), original.predict_chunk(batch))
    with pytest.raises(UserError, match="oft config, not one for openvla"):
        OpenVlaRecipe.from_dict(TINY_OFT.to_dict())


def aloha_dataset(root, episodes=2, length=20):
    from pi0bench.lerobot_dataset import LeRobotWriter

    names = [f"j{i}" for i in range(14)]
    writer = LeRobotWriter(root, fps=50.0, robot_type="aloha", cameras=CAMERAS["aloha"], image_size=16,
                           state_names=names, action_names=names)
    rng = np.random.default_rng(1)
    for e in range(episodes):
        t = np.arange(length)[:, None] / length
        states = list((np.cos(t * 2 + e + np.arange(14)) * 0.4).astype(np.float32))
        frames = {c: [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(length)] for c in CAMERAS["aloha"]}
        writer.add_episode(frames, states, states[1:] + states[-1:], task="fold the towel")
    writer.close()
    return root


@pytest.mark.usefixtures("onednn_off")
@pytest.mark.parametrize("policy,config", [("openvla", TINY), ("openvla-oft", TINY_OFT)])
def test_training_pipeline_learns_both_robots_in_one_model(tmp_path, monkeypatch, policy, config):
    from pi0bench.registry import recipe_class
    from pi0bench.train import TrainConfig, train

    monkeypatch.setitem(recipe_class(policy).configs, config.name, replace(config, action_dim=0, state_dim=0))
    data = [synthetic_dataset(tmp_path / "franka"), aloha_dataset(tmp_path / "aloha")]
    final = train(TrainConfig(policy=policy, data=data, out=tmp_path / "run", model=config.name, steps=2,
                              batch_size=4, warmup=1))
    saved = json.loads((final / "config.json").read_text())
    assert set(saved["normalizers"]) == {"franka", "aloha"}
    assert len(saved["normalizers"]["aloha"]["action_q99"]) == 14 and len(saved["normalizers"]["franka"]["action_q01"]) == 8
    widths = (saved["model"]["action_dim"], saved["model"]["state_dim"])
    assert widths == ((14, 14) if policy == "openvla-oft" else (0, 0))


@pytest.fixture
def camera_env():
    from pi0bench.envs.task_env import TaskEnv

    env = TaskEnv("drawer_tidy", cameras=("base",), image_size=16)  # the one camera OpenVLA reads
    env.max_steps = SHORT_EPISODE
    yield env
    env.close()


@pytest.mark.parametrize("policy,config,execute", [("openvla", TINY, 1), ("openvla-oft", TINY_OFT, 4)])
def test_episode_through_the_real_loop(tmp_path, camera_env, policy, config, execute):
    """A (shortened) drawer_tidy episode each, run to truncation and played again: the calls and
    the final simulator state repeat exactly."""
    from pi0bench.registry import make_policy
    from pi0bench.rollout import run_episode

    agent = make_policy(policy, camera_env, save_checkpoint(tmp_path, policy, config))
    assert agent.execute_steps == execute
    obs, _ = camera_env.reset(seed=0)
    chunk = agent.act(obs)
    assert chunk.shape == (execute, 8) and chunk.dtype == np.float32
    np.testing.assert_array_equal(chunk, agent.act(obs))
    record = run_episode(camera_env, agent, task="drawer_tidy", policy_name=policy, seed=0, episode=0)
    assert record.error == "" and record.steps == camera_env.max_steps
    again = run_episode(camera_env, agent, task="drawer_tidy", policy_name=policy, seed=0, episode=0)
    assert record.final_state_sha and again.final_state_sha == record.final_state_sha


def test_one_line_errors(tmp_path):
    from pi0bench.envs.task_env import TaskEnv
    from pi0bench.registry import make_policy

    env = TaskEnv("drawer_tidy", cameras=("wrist",), image_size=16)
    try:
        with pytest.raises(UserError, match="no openvla checkpoint at"):
            make_policy("openvla", env, str(tmp_path / "nowhere"))
        agent = make_policy("openvla", env, save_checkpoint(tmp_path, "openvla", TINY))
        obs, _ = env.reset(seed=0)
        with pytest.raises(UserError, match="reads the base camera"):
            agent.act(obs)
        with pytest.raises(UserError, match="is a 'openvla' checkpoint, not a 'openvla-oft' one"):
            make_policy("openvla-oft", env, str(tmp_path / "openvla"))
    finally:
        env.close()
    towel = TaskEnv("towel_fold", cameras=())
    try:
        with pytest.raises(UserError, match="not on the aloha robot"):
            make_policy("openvla", towel, str(tmp_path / "openvla"))
    finally:
        towel.close()
