"""The diagnostics a researcher runs on a training run: the fit check (training states vs
held-out states) and the learning curve over milestone checkpoints, on a tiny real dataset."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import onednn_disabled
from test_baselines import TINY_ACT

from pi0bench.curve import learning_curve, training_episodes
from pi0bench.demos import DemoConfig, record_demos
from pi0bench.errors import UserError
from pi0bench.rollout import episode_seed


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Three drawer attempts at 16 px (the first one fails at this noise) and a tiny ACT
    trained on them for 4 steps, keeping steps 2 and 4."""
    from pi0bench.registry import recipe_class
    from pi0bench.train import TrainConfig, train

    root = tmp_path_factory.mktemp("curve")
    record_demos(DemoConfig(task="drawer_tidy", episodes=3, out=root / "data", image_size=16, noise=0.01))
    configs = recipe_class("act").configs
    configs[TINY_ACT.name] = replace(TINY_ACT, state_dim=0, action_dim=0, cameras=0)
    with onednn_disabled():
        train(TrainConfig(policy="act", data=[root / "data"], out=root / "run", model=TINY_ACT.name, steps=4,
                          batch_size=2, warmup=1, milestones=(0.5, 1.0)))
    yield root
    del configs[TINY_ACT.name]


def test_training_episodes_are_the_kept_attempts_of_the_recording_seed(tiny_run):
    task, seed, kept = training_episodes(tiny_run / "data")
    assert (task, seed) == ("drawer_tidy", 1)
    episodes = pd.read_parquet(tiny_run / "data/meta/episodes/chunk-000/file-000.parquet")
    assert [episode_seed(task, seed, i) for i in kept] == episodes["seed"].tolist()
    assert 0 not in kept and len(kept) == 2  # attempt 0 was dropped


def test_learning_curve_fit_checks_every_milestone(tiny_run):
    path = learning_curve(tiny_run / "run", tiny_run / "data", episodes=1, out=tiny_run / "curve",
                          image_size=16, cameras=None)
    rows = pd.read_csv(path)
    assert sorted(set(rows["step"])) == [2, 4]
    assert set(rows["split"]) == {"train", "held-out"} and (rows["episodes"] == 1).all()
    assert (tiny_run / "curve" / "curve.png").stat().st_size > 5_000
    _, _, kept = training_episodes(tiny_run / "data")
    train = pd.read_parquet(tiny_run / "curve/step-000002/train/episodes")
    assert train["episode"].tolist() == kept[:1]  # only a kept attempt's state is played
    held = pd.read_parquet(tiny_run / "curve/step-000002/held-out/episodes")
    assert held["seed"].tolist() == [0]


def test_a_run_without_milestones_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no milestone checkpoints"):
        learning_curve(tmp_path, tmp_path, episodes=1, out=tmp_path / "c")


def _weights(checkpoint_dir):
    from safetensors.torch import load_file
    return load_file(str(checkpoint_dir / "model.safetensors"))


def test_a_warm_start_begins_from_the_checkpoint_s_weights_and_normalisation(tiny_run, tmp_path):
    """At lr 0 nothing moves, so a warm-started run's weights are the source's exactly and a cold
    run's are its own random init: the comparison fails if the weights are not loaded."""
    import json

    import torch

    from pi0bench.train import TrainConfig, train

    source = tiny_run / "run" / "checkpoints" / "last"
    common = dict(policy="act", data=[tiny_run / "data"], steps=1, batch_size=2, warmup=1, lr=0.0, seed=7)
    with onednn_disabled():
        warm = train(TrainConfig(out=tmp_path / "warm", init_from=source, **common))
        cold = train(TrainConfig(out=tmp_path / "cold", model=TINY_ACT.name, **common))
    expected = _weights(source)
    assert all(torch.equal(v, expected[k]) for k, v in _weights(warm).items())
    assert not all(torch.equal(v, expected[k]) for k, v in _weights(cold).items())
    config, origin = (json.loads((d / "config.json").read_text()) for d in (warm, source))
    assert config["normalizers"] == origin["normalizers"] and config["model"] == origin["model"]
    assert config["warm_start"]["step"] == 4 and len(config["warm_start"]["sha256"]) == 64
    assert config["train"]["init_from"] == str(source)


def test_a_warm_start_from_another_policy_or_size_is_one_clear_error(tiny_run, tmp_path):
    from pi0bench.train import TrainConfig, train

    source = tiny_run / "run" / "checkpoints" / "last"
    with pytest.raises(UserError, match="is a 'act' checkpoint, not a 'dp' one"):
        train(TrainConfig(policy="dp", data=[tiny_run / "data"], out=tmp_path / "a", init_from=source, steps=1))
    with pytest.raises(UserError, match="drop --model or match it"):
        train(TrainConfig(policy="act", data=[tiny_run / "data"], out=tmp_path / "b", init_from=source,
                          model="act-small", steps=1))
    with pytest.raises(UserError, match="is not a checkpoint"):
        train(TrainConfig(policy="act", data=[tiny_run / "data"], out=tmp_path / "c", init_from=tmp_path, steps=1))


class _Replayer:
    """A stand-in policy that answers each dataset window with its recorded actions, shifted
    by `offset`, optionally only the first row held (`hold`), plus seeded noise (`noise`)."""

    execute_steps = 8

    def __init__(self, data, offset=0.0, hold=False, noise=0.0):
        from pi0bench.lerobot_dataset import DemoDataset

        self.dataset, self.offset, self.hold, self.noise = DemoDataset(data, chunk=12), offset, hold, noise
        self.rng = np.random.default_rng(0)

    def reset(self, task, seed):
        self.rng = np.random.default_rng(seed)

    def act(self, obs):
        index = int(np.flatnonzero((self.dataset.states == obs["state"]).all(axis=1))[0])
        actions = self.dataset[index]["action"].numpy()
        if self.hold:
            actions = np.repeat(actions[:1], len(actions), axis=0)
        return actions + self.offset + self.noise * self.rng.standard_normal(actions.shape)


def test_chunk_error_measures_error_spread_and_motion(tiny_run, monkeypatch):
    import pi0bench.chunk_error as module

    checkpoint = tiny_run / "run/checkpoints/step-000004"
    data = tiny_run / "data"

    def run(**replayer):
        monkeypatch.setattr(module, "make_policy", lambda *a, **k: _Replayer(data, **replayer))
        return module.chunk_error(checkpoint, data, windows=20, image_size=16)

    exact = run()
    assert exact.rows == 8 and exact.windows == 20
    assert max(exact.error) == 0.0 and max(exact.spread) == 0.0 and max(exact.hold) > 0.0
    shifted = run(offset=0.05)
    np.testing.assert_allclose(shifted.error, 0.05, rtol=1e-5)
    assert shifted.hold == exact.hold
    held = run(hold=True)  # repeating the first recorded action is the "hold" reference
    np.testing.assert_allclose(held.error, exact.hold, rtol=1e-6)
    noisy = run(noise=0.1)
    assert min(noisy.spread) > 0.05 and min(noisy.error) > 0.03
    monkeypatch.setattr(module, "make_policy", lambda *a, **k: _Replayer(data, hold=True))
    first = module.chunk_error(checkpoint, data, windows=20, image_size=16, rows=1)
    assert first.rows == 1 and max(first.error) == 0.0  # row 0 is the recorded first action
    with pytest.raises(UserError, match="--rows 13 is more than the 12 rows"):
        module.chunk_error(checkpoint, data, windows=2, image_size=16, rows=13)


def test_chunk_error_on_a_trained_checkpoint(tiny_run):
    from pi0bench.chunk_error import chunk_error

    result = chunk_error(tiny_run / "run/checkpoints/step-000004", tiny_run / "data", windows=4, image_size=16)
    assert (result.policy, result.task, result.windows) == ("act", "drawer_tidy", 4)
    assert result.rows == TINY_ACT.chunk and len(result.error) == 8
    assert max(result.spread) == 0.0  # ACT is deterministic: two draws agree exactly
    assert all(np.isfinite(result.error)) and min(result.error) > 0.0
    with pytest.raises(UserError, match="--windows must be at least 1"):
        chunk_error(tiny_run / "run/checkpoints/step-000004", tiny_run / "data", windows=0)
    with pytest.raises(UserError, match="--rows must be at least 1"):
        chunk_error(tiny_run / "run/checkpoints/step-000004", tiny_run / "data", rows=0)


def _replanning_replayer(data):
    """A stand-in re-planning policy (window 2, as DP's) that plans the recorded actions of the
    window its newest frame belongs to, and keeps the frame states it was given."""
    from pi0bench.lerobot_dataset import DemoDataset
    from pi0bench.policies.replanning import ReplanningPolicy

    dataset = DemoDataset(data, chunk=8)

    class Replayer(ReplanningPolicy):
        seen: list = []

        @classmethod
        def _plan_batch(cls, policies, rows):
            states = [o["state"] for o in policies[0].history]
            cls.seen.append(np.stack(states))
            index = int(np.flatnonzero((dataset.states == states[-1]).all(axis=1))[0])
            return [dataset[index]["action"].numpy()]

    return Replayer(window=2)


def test_chunk_error_gives_a_re_planning_policy_consecutive_frames_and_compares_its_plan(tiny_run, monkeypatch):
    import pi0bench.chunk_error as module
    from pi0bench.lerobot_dataset import DemoDataset

    data = tiny_run / "data"
    replayer = _replanning_replayer(data)
    monkeypatch.setattr(module, "make_policy", lambda *a, **k: replayer)
    result = module.chunk_error(tiny_run / "run/checkpoints/step-000004", data, windows=10, image_size=16)
    assert result.rows == 8 and max(result.error) == 0.0 and max(result.hold) > 0.0  # the whole plan
    history = DemoDataset(data, chunk=8, history=2)
    picks = np.random.default_rng(0).choice(len(history), size=10, replace=False)
    expected = [history[int(i)]["state"].numpy() for i in picks for _ in range(2)]  # two draws each
    np.testing.assert_array_equal(np.stack(replayer.seen), np.stack(expected))
    assert any((h[0] != h[1]).any() for h in replayer.seen)  # frames t-1 and t, not one frame twice


@pytest.mark.usefixtures("onednn_off")
def test_chunk_error_on_a_diffusion_policy_checkpoint(tiny_run, tmp_path, monkeypatch):
    from test_baselines import TINY_DP, register_tiny

    from pi0bench.chunk_error import chunk_error
    from pi0bench.train import TrainConfig, train

    register_tiny(monkeypatch, "dp", TINY_DP)
    final = train(TrainConfig(policy="dp", data=[tiny_run / "data"], out=tmp_path / "dp",
                              model=TINY_DP.name, steps=2, batch_size=2, warmup=1))
    result = chunk_error(final, tiny_run / "data", windows=4, image_size=16)
    assert result.policy == "dp" and result.rows == TINY_DP.execute  # the plan the loop executes
    assert min(result.spread) > 0.0  # two noise draws differ
    assert all(np.isfinite(result.error))
