"""Shared fixtures. Tests run the real simulator: it is cheap (drawer_tidy steps at ~40x real
time without cameras)."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

REPO = Path(__file__).resolve().parents[1]
CHECK_RUN = REPO.parent / "shared" / "tools" / "check_run.py"


@pytest.fixture(autouse=True)
def policy_threads():
    """Tests that build policies directly run them on the thread count every evaluation path
    uses (workers.POLICY_THREADS). Torch's default, a thread per core, spins against any other
    process on the machine: beside a training job it made the tiny-model episode tests 10-35x
    slower (375 s for one DP episode, 46 s on one thread under heavier load)."""
    from pi0bench.workers import use_policy_threads

    use_policy_threads()


def onednn_disabled():
    """Train tiny models without oneDNN. On the AMD EPYC machine measured on 2026-12-02, torch
    2.13's oneDNN backward on one thread corrupts the heap for a 16-px tiny ACT (`free(): invalid next
    size`, then SIGABRT; fine on two threads or with oneDNN off; the 64-px recipes train
    normally). The tests check the training pipeline, not that kernel."""
    import torch

    return torch.backends.mkldnn.flags(enabled=False)


@pytest.fixture
def onednn_off():
    with onednn_disabled():
        yield


@pytest.fixture
def drawer_env():
    from pi0bench.envs.task_env import TaskEnv

    env = TaskEnv("drawer_tidy", cameras=())
    yield env
    env.close()


def check_run_contract(run_dir: Path) -> None:
    """Run the project's shared run-store checker (../shared/tools/check_run.py, beside the
    checkout, as CI lays it); a missing checker fails the test rather than passing unchecked."""
    import subprocess

    if not CHECK_RUN.exists():
        pytest.fail(f"the run-store checker {CHECK_RUN} is missing: check out shared/ beside the repository")
    result = subprocess.run([sys.executable, str(CHECK_RUN), str(run_dir)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def evaluate_cell(policy: str, task: str, episodes: int, out: Path, workers: int = 2) -> dict:
    """Run `episodes` of a policy on a task through the real evaluation pipeline (no cameras)
    and return its summary cell."""
    from pi0bench.evaluate import EvalConfig, evaluate

    config = EvalConfig(policy=policy, task=task, episodes=episodes, seed=0, workers=workers,
                        out=out, cameras=())
    (cell,) = evaluate(config)["cells"]
    return cell


def expert_infos(env, seed: int, steps: int | None = None):
    """Play the scripted expert from a seeded reset, yielding each step's info until the
    episode ends (or `steps` steps have run)."""
    from pi0bench.registry import make_policy

    env.reset(seed=seed)
    policy = make_policy("scripted", env)
    policy.reset(env.task.name, seed)
    for _ in range(steps or env.max_steps):
        _, terminated, truncated, info = env.advance(policy.act({})[0])
        yield info
        if terminated or truncated:
            return


def run_expert(env, seed: int, steps: int | None = None) -> dict:
    """The last step's info of an expert episode (see `expert_infos`)."""
    info: dict = {}
    for info in expert_infos(env, seed, steps):
        pass
    return info


@pytest.fixture(scope="session")
def tiny_pi0_checkpoint(tmp_path_factory) -> Path:
    """A tiny π0 (horizon 16) trained for 200 steps on a synthetic Franka dataset: small
    enough to train in seconds, trained enough that its chunks follow the data."""
    from dataclasses import replace

    from test_pi0 import TINY, synthetic_dataset

    from pi0bench.policies.pi0 import recipe as recipe_module
    from pi0bench.train import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny_pi0")
    config = replace(TINY, name="tiny16", horizon=16)
    recipe_module.CONFIGS["tiny16"] = config
    try:
        data = synthetic_dataset(root / "data", episodes=4, length=40)
        with onednn_disabled():
            return train(TrainConfig(policy="pi0", data=[data], model="tiny16", steps=200, batch_size=16,
                                     warmup=10, checkpoint_every=1000, out=root / "run"))
    finally:
        del recipe_module.CONFIGS["tiny16"]


def check_replanning_window(policy, env, queued: int) -> None:
    """A replanning policy (DP, Octo) on drawer_tidy: its window starts with the first frame
    repeated, takes each new observation, plans `queued` + 1 actions at a time, and starts
    afresh at `reset`, replaying the same plan for the same seed and another for another seed."""
    obs, _ = env.reset(seed=0)
    policy.reset("drawer_tidy", 3)
    first = policy.act(obs)
    assert first.shape == (1, 8) and first.dtype == np.float32 and len(policy.queue) == queued
    assert all(o is obs for o in policy.history)  # the first frame stands in for the one before
    later, _, _, _, _ = env.step(first[0])
    policy.act(later)
    assert policy.history[0] is obs and policy.history[1] is later
    policy.reset("drawer_tidy", 3)
    assert not policy.history and not policy.queue
    np.testing.assert_array_equal(policy.act(obs), first)  # same seed, same start, same plan
    policy.reset("drawer_tidy", 4)
    assert not np.array_equal(policy.act(obs), first)


def seeded_model(model_class, config):
    """A model built after seeding torch with 0, in eval mode: the same weights in every test
    that builds it from the same config."""
    import torch

    torch.manual_seed(0)
    return model_class(config).eval()
