"""ACT and Diffusion Policy: shapes, learning, ACT's temporal ensemble, DP's noise schedule and
observation history, checkpoints, the training pipeline, and episodes in the real loop."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import check_replanning_window
from test_pi0 import synthetic_dataset

from pi0bench.errors import UserError
from pi0bench.policies.act.config import ACT, ACT_SMALL
from pi0bench.policies.act.model import ActModel
from pi0bench.policies.act.policy import TemporalEnsembler
from pi0bench.policies.dp.config import DP, DP_SMALL
from pi0bench.policies.dp.model import DpModel, noise_schedulers
from pi0bench.registry import recipe_class

DIMS = dict(state_dim=8, action_dim=8, cameras=2)  # the synthetic franka dataset's
TINY_ACT = replace(ACT_SMALL, name="tiny-act", chunk=8, dim=16, heads=2, ff=32, encoder_layers=1,
                   vae_layers=1, backbone_width=4, image_size=16, **DIMS)
TINY_DP = replace(DP_SMALL, name="tiny-dp", horizon=8, execute=4, down_dims=(32, 64), step_embed=32,
                  keypoints=4, backbone_width=4, image_size=16, **DIMS)


def act_batch(cfg=TINY_ACT, b=4, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    pad = torch.zeros(b, cfg.chunk, dtype=torch.bool)
    pad[0, -3:] = True
    return {"images": torch.rand(b, cfg.cameras, 3, cfg.image_size, cfg.image_size, generator=g),
            "state": torch.randn(b, cfg.state_dim, generator=g),
            "actions": torch.randn(b, cfg.chunk, cfg.action_dim, generator=g), "action_is_pad": pad}


def dp_batch(cfg=TINY_DP, b=4, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    t, s = cfg.obs_steps, cfg.image_size
    return {"images": torch.rand(b, t, cfg.cameras, 3, s, s, generator=g),
            "state": torch.randn(b, t, cfg.state_dim, generator=g),
            "actions": torch.randn(b, cfg.horizon, cfg.action_dim, generator=g),
            "action_is_pad": torch.zeros(b, cfg.horizon, dtype=torch.bool)}


def test_act_shapes_forward_and_backward():
    torch.manual_seed(0)
    model = ActModel(TINY_ACT)
    batch = act_batch()
    mu, logvar = model.encode_style(batch["state"], batch["actions"], batch["action_is_pad"])
    assert mu.shape == logvar.shape == (4, TINY_ACT.latent)
    assert model(batch["images"], batch["state"], mu).shape == (4, TINY_ACT.chunk, TINY_ACT.action_dim)
    model.loss(batch).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    first = model.predict(batch["images"], batch["state"])
    torch.testing.assert_close(first, model.predict(batch["images"], batch["state"]))  # z = 0: deterministic


def test_dp_shapes_forward_and_backward():
    torch.manual_seed(0)
    model = DpModel(TINY_DP)
    batch = dp_batch()
    cond = model.condition(batch["images"], batch["state"])
    assert cond.shape == (4, TINY_DP.obs_steps * (TINY_DP.cameras * 2 * TINY_DP.keypoints + TINY_DP.state_dim))
    eps = model.unet(batch["actions"], torch.tensor([0, 5, 50, 99]), cond)
    assert eps.shape == batch["actions"].shape
    model.loss(batch).backward()
    assert all(p.grad is not None for p in model.parameters())
    noise = torch.randn(1, TINY_DP.horizon, TINY_DP.action_dim)
    sample = model.eval().sample(batch["images"][:1], batch["state"][:1], noise)
    assert sample.shape == noise.shape and torch.isfinite(sample).all()


def test_paper_sizes_build():
    with torch.device("meta"):
        act = ActModel(replace(ACT, state_dim=14, action_dim=14, cameras=4))
        dp = DpModel(replace(DP, state_dim=14, action_dim=14, cameras=3))
    assert 4e7 < sum(p.numel() for p in act.parameters()) < 1e8  # width 512, ResNet-18 backbone
    assert 2e8 < sum(p.numel() for p in dp.parameters()) < 3.5e8  # U-Net 512/1024/2048


@pytest.mark.parametrize("build,batch", [(lambda: ActModel(TINY_ACT), act_batch), (lambda: DpModel(TINY_DP), dp_batch)])
def test_loss_falls_on_a_tiny_dataset(build, batch):
    """Four examples, each seen under 8 noise draws a step."""
    torch.manual_seed(0)
    data = {k: v.repeat(8, *([1] * (v.dim() - 1))) for k, v in batch(b=4).items()}
    assert loss_falls(build(), data, steps=120)


def loss_falls(model, data: dict, steps: int, factor: float = 0.7) -> bool:
    """Train on `data` and say whether the loss fell below `factor` of where it started. The
    loss is measured before and after with one fixed set of noise draws, so the comparison is
    not at the mercy of sampling."""

    def held_out() -> float:
        with torch.no_grad():
            return model.loss(data, generator=torch.Generator().manual_seed(123)).item()

    before = held_out()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss = model.loss(data, generator=g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return held_out() < factor * before


def test_temporal_ensemble_weights_favour_the_oldest_chunk():
    ensembler = TemporalEnsembler(0.01)
    w = ensembler.weights(5)
    assert np.isclose(w.sum(), 1.0) and np.all(np.diff(w) < 0)  # oldest (i = 0) weighs most
    np.testing.assert_allclose(w[1] / w[0], np.exp(-0.01))
    chunks = [np.full((3, 1), float(v)) for v in (10.0, 20.0, 30.0, 40.0)]
    assert ensembler.step(chunks[0])[0] == 10.0
    second = ensembler.step(chunks[1])[0]  # predictions for step 1: 10 (old), 20 (new)
    assert np.isclose(second, (10 + 20 * np.exp(-0.01)) / (1 + np.exp(-0.01)))
    ensembler.step(chunks[2])
    fourth = ensembler.step(chunks[3])[0]  # chunk 0 (length 3) no longer covers step 3
    expected = np.array([20.0, 30.0, 40.0]) @ ensembler.weights(3)
    assert np.isclose(fourth, expected)
    ensembler.reset()
    assert ensembler.step(chunks[3])[0] == 40.0


def test_dp_schedule_round_trip_recovers_the_sample():
    """Noise a sample to the last level, then run DDIM with the true ε at every step."""
    ddpm, ddim = noise_schedulers(DP_SMALL)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 16, 8, generator=g), torch.randn(2, 16, 8, generator=g)
    alphas = ddpm.alphas_cumprod
    x = ddpm.add_noise(x0, eps, torch.tensor([99, 99]))
    torch.testing.assert_close(x, alphas[99].sqrt() * x0 + (1 - alphas[99]).sqrt() * eps)
    ddim.set_timesteps(10)
    for t in ddim.timesteps:
        true_eps = (x - alphas[t].sqrt() * x0) / (1 - alphas[t]).sqrt()
        x = ddim.step(true_eps, t, x).prev_sample
    torch.testing.assert_close(x, x0, atol=1e-4, rtol=1e-4)
    assert ddpm.config.beta_schedule == "squaredcos_cap_v2" and ddpm.config.prediction_type == "epsilon"


def _checkpoint(tmp_path, policy, cfg, model):
    from pi0bench import checkpoint
    from pi0bench.normalize import Normalizer

    zeros, ones = [0.0] * 8, [1.0] * 8
    norm = Normalizer.from_dict({"state_mean": zeros, "state_std": ones, "action_mean": zeros, "action_std": ones})
    config = {"policy": policy, "model": cfg.to_dict(), "normalizers": {"franka": norm.to_dict()}, "step": 0}
    checkpoint.save(tmp_path / policy, config, model.state_dict())
    return tmp_path / policy


# The loop, truncation and replay are the same at any length; 101 steps (not a multiple of any
# chunk or re-planning period) keep an untrained model's episode short enough to play twice.
SHORT_EPISODE = 101


def register_tiny(monkeypatch, policy: str, cfg) -> None:
    """Make `cfg` a named model of `policy` for this test, its dimensions left to the dataset."""
    monkeypatch.setitem(recipe_class(policy).configs, cfg.name, replace(cfg, state_dim=0, action_dim=0, cameras=0))


@pytest.fixture
def drawer_env():
    from pi0bench.envs.task_env import TaskEnv

    env = TaskEnv("drawer_tidy", image_size=32)
    env.max_steps = SHORT_EPISODE
    yield env
    env.close()


def test_checkpoint_round_trips(tmp_path):
    from pi0bench.checkpoint import load_policy_model

    torch.manual_seed(0)
    act, dp = ActModel(TINY_ACT).eval(), DpModel(TINY_DP).eval()
    _, loaded, _ = load_policy_model(_checkpoint(tmp_path, "act", TINY_ACT, act), recipe_class("act"))
    batch = act_batch()
    torch.testing.assert_close(loaded.predict(batch["images"], batch["state"]), act.predict(batch["images"], batch["state"]))
    _, loaded, _ = load_policy_model(_checkpoint(tmp_path, "dp", TINY_DP, dp), recipe_class("dp"))
    batch, noise = dp_batch(), torch.randn(4, TINY_DP.horizon, 8)
    torch.testing.assert_close(loaded.sample(batch["images"], batch["state"], noise),
                               dp.sample(batch["images"], batch["state"], noise))


def test_dp_history_starts_fresh_every_episode(tmp_path, drawer_env):
    from pi0bench.registry import make_policy

    torch.manual_seed(0)
    policy = make_policy("dp", drawer_env, str(_checkpoint(tmp_path, "dp", TINY_DP, DpModel(TINY_DP))))
    check_replanning_window(policy, drawer_env, queued=TINY_DP.execute - 1)


def test_act_temporal_ensemble_is_a_policy_option(tmp_path, drawer_env):
    from pi0bench.registry import make_policy

    path = str(_checkpoint(tmp_path, "act", TINY_ACT, ActModel(TINY_ACT)))
    assert make_policy("act", drawer_env, path).execute_steps == TINY_ACT.chunk
    ensembled = make_policy("act", drawer_env, path, {"temporal_ensemble": 0.01})
    assert ensembled.execute_steps == 1
    with pytest.raises(UserError, match="has no option 'beam'"):
        make_policy("act", drawer_env, path, {"beam": 2})
    with pytest.raises(UserError, match="is a 'act' checkpoint, not a 'dp' one"):
        make_policy("dp", drawer_env, path)


@pytest.mark.parametrize("policy,cfg,build,args", [
    ("act", TINY_ACT, ActModel, {}), ("act", TINY_ACT, ActModel, {"temporal_ensemble": 0.01}),
    ("dp", TINY_DP, DpModel, {})])
def test_episode_through_the_real_loop(tmp_path, drawer_env, policy, cfg, build, args):
    from pi0bench.checkpoint import weights_digest
    from pi0bench.registry import make_policy
    from pi0bench.rollout import run_episode

    torch.manual_seed(0)
    path = _checkpoint(tmp_path, policy, cfg, build(cfg))
    agent = make_policy(policy, drawer_env, str(path), args)
    record = run_episode(drawer_env, agent, task="drawer_tidy", policy_name=policy, seed=0, episode=0)
    assert record.error == "" and record.steps == drawer_env.max_steps
    assert record.checkpoint_sha == weights_digest(path)  # the episode names its weights
    again = run_episode(drawer_env, agent, task="drawer_tidy", policy_name=policy, seed=0, episode=0)
    # an untrained model scores 0 and runs to the limit either way: only the final simulator
    # state can tell a replay that diverged from one that did not
    assert record.final_state_sha and again.final_state_sha == record.final_state_sha


def test_dp_noise_draws_denoise_one_condition_at_several_noise_levels():
    """With k draws the loss is the k-times-repeated batch's loss with one draw (the same noise
    and levels from the generator): each window's condition is denoised k times."""
    torch.manual_seed(0)
    model = DpModel(TINY_DP)
    batch = dp_batch()
    twice = {k: v.repeat(2, *[1] * (v.dim() - 1)) for k, v in batch.items()}
    model.cfg = replace(TINY_DP, noise_draws=2)
    drawn = model.loss(batch, torch.Generator().manual_seed(3))
    model.cfg = TINY_DP
    expected = model.loss(twice, torch.Generator().manual_seed(3))
    torch.testing.assert_close(drawn, expected)
    assert not torch.allclose(model.loss(batch, torch.Generator().manual_seed(3)), expected)
    with pytest.raises(UserError, match="noise_draws must be at least 1"):
        replace(TINY_DP, noise_draws=0)


@pytest.mark.usefixtures("onednn_off")
def test_model_args_set_config_fields_and_bad_ones_are_one_line_errors(tmp_path, monkeypatch):
    import json

    from pi0bench.train import TrainConfig, train

    register_tiny(monkeypatch, "dp", TINY_DP)
    data = synthetic_dataset(tmp_path / "data")
    common = dict(policy="dp", data=[data], model=TINY_DP.name, steps=2, batch_size=2, warmup=1)
    final = train(TrainConfig(out=tmp_path / "run", model_args=(("noise_draws", 3),), **common))
    assert json.loads((final / "config.json").read_text())["model"]["noise_draws"] == 3
    train(TrainConfig(out=tmp_path / "run", model_args=(("noise_draws", 3),), **common))  # resumes
    with pytest.raises(UserError, match="started with noise_draws=3, not 2"):
        train(TrainConfig(out=tmp_path / "run", model_args=(("noise_draws", 2),), **common))
    with pytest.raises(UserError, match="'beam' is not a field of the tiny-dp config; choose from: .*noise_draws"):
        train(TrainConfig(out=tmp_path / "other", model_args=(("beam", 2),), **common))
    with pytest.raises(UserError, match="noise_draws=2.5: expected int, like its current value 1"):
        train(TrainConfig(out=tmp_path / "other", model_args=(("noise_draws", 2.5),), **common))


@pytest.mark.usefixtures("onednn_off")
@pytest.mark.parametrize("policy,cfg", [("act", TINY_ACT), ("dp", TINY_DP)])
def test_training_pipeline_fits_the_dataset(tmp_path, monkeypatch, policy, cfg):
    import json

    from pi0bench.train import TrainConfig, train

    register_tiny(monkeypatch, policy, cfg)
    data = synthetic_dataset(tmp_path / "data")
    final = train(TrainConfig(policy=policy, data=[data], out=tmp_path / "run", model=cfg.name, steps=2,
                              batch_size=2, warmup=1))
    config = json.loads((final / "config.json").read_text())
    assert {k: config["model"][k] for k in DIMS} == DIMS and config["train"]["lr"] == cfg.lr
    with pytest.raises(UserError, match="trained per task"):
        train(TrainConfig(policy=policy, data=[data, data], out=tmp_path / "two", model=cfg.name, steps=1))
