"""`--device`: where a learned policy's model runs (policies/device.py).

No GPU is needed to check the plumbing: a model moved to PyTorch's `meta` device computes
shapes without data, and any CPU tensor that reaches it is an error ("Tensor on device cpu is
not on the expected device meta"). So a policy whose forward pass runs entirely on its model's
device fails only when the chunk is copied back to the CPU ("Cannot copy out of meta tensor"):
that is the error each family must raise below. Checked to fail before the change: all six
families (and pi0's guided sample) then raised the device-mismatch error instead.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from pi0bench.envs.task_env import TaskEnv
from pi0bench.errors import UserError
from pi0bench.evaluate import EvalConfig
from pi0bench.policies.device import torch_device, to_device
from pi0bench.registry import make_policy

LEARNED = ("act", "dp", "pi0", "octo", "openvla", "openvla-oft")
NO_CUDA = not torch.cuda.is_available()


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pi0bench.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def drawer():
    env = TaskEnv("drawer_tidy", image_size=64)
    obs = env.reset(seed=3)[0]
    description = env.description
    env.close()
    return description, obs


@pytest.fixture
def meta_friendly(monkeypatch):
    """torch's transformer layers look at a mask's values to detect a causal one, which a meta
    tensor has none of; the masks here never are causal, so the check is answered without data."""
    monkeypatch.setattr(torch.nn.modules.transformer, "_detect_is_causal_mask",
                        lambda mask, is_causal=None, size=None: bool(is_causal))


# Where a forward pass run wholly on the meta device stops: copying the chunk back to the CPU,
# or, for OFT, at the boolean selection of its action slots after the language model (a
# data-dependent shape; the regression head after it is a plain layer of the same model).
STOPS_AT = {"openvla-oft": (NotImplementedError, "torch.nonzero")}


@pytest.mark.parametrize("policy", LEARNED)
def test_the_whole_forward_pass_runs_on_the_models_device(policy, drawer, meta_friendly):
    description, obs = drawer
    built = make_policy(policy, description)
    built.reset("drawer_tidy", 1)
    built.model.to("meta")
    error, message = STOPS_AT.get(policy, (NotImplementedError, "Cannot copy out of meta tensor"))
    with pytest.raises(error, match=message):
        built.act(obs)


def test_rtc_guidance_runs_on_the_models_device(drawer):
    description, obs = drawer
    built = make_policy("pi0", description)
    built.reset("drawer_tidy", 1)
    previous = built.act(obs)
    built.model.to("meta")
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):
        built.act_guided(obs, previous[built.execute_steps:], delay=3)


@pytest.mark.parametrize("policy", LEARNED)
def test_device_cpu_is_the_default_exactly(policy, drawer):
    description, obs = drawer
    chunks = []
    for args in ({}, {"device": "cpu"}):
        built = make_policy(policy, description, args=args)
        built.reset("drawer_tidy", 2)
        chunks.append(built.act(obs))
    np.testing.assert_array_equal(chunks[0], chunks[1])


@pytest.mark.parametrize("name, message", [
    ("gpu", "unknown --device 'gpu'; choose cpu, cuda, cuda:N or mps"),
    ("cuda:x", "unknown --device"),
    ("meta", "unknown --device 'meta'"),
])
def test_an_unknown_device_is_one_clear_error(name, message):
    with pytest.raises(UserError, match=message):
        torch_device(name)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA GPU")
def test_a_gpu_torch_cannot_see_is_one_clear_error():
    with pytest.raises(UserError, match="torch sees no CUDA GPU here .*use --device cpu"):
        torch_device("cuda")


def test_to_device_moves_nested_tensors_and_leaves_the_rest():
    value = {"a": torch.zeros(2), "b": [torch.ones(1), "text"], "c": 3}
    moved = to_device(value, torch.device("meta"))
    assert moved["a"].is_meta and moved["b"][0].is_meta
    assert moved["b"][1] == "text" and moved["c"] == 3


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA GPU")
def test_the_cli_refuses_a_missing_gpu_before_any_episode(tmp_path):
    result = run_cli(["eval", "--policy", "act", "--task", "drawer_tidy", "--episodes", "1",
                      "--image-size", "64", "--device", "cuda", "--out", str(tmp_path / "run")])
    assert result.returncode == 2
    assert "torch sees no CUDA GPU here" in result.stderr
    assert not (tmp_path / "run" / "episodes").exists()


def test_device_is_only_for_learned_policies_and_given_once():
    with pytest.raises(UserError, match="runs no model of its own: --device applies to act, dp"):
        EvalConfig(policy="random", task="drawer_tidy", policy_args=(("device", "cpu"),)).validate()
    result = run_cli(["eval", "--policy", "act", "--task", "drawer_tidy", "--device", "cpu",
                      "--policy-arg", "device=cpu"])
    assert result.returncode == 2 and "'device' is given twice" in result.stderr


def test_a_device_is_part_of_the_run_identity():
    plain = EvalConfig(policy="act", task="drawer_tidy").as_run_config()
    on_cpu = EvalConfig(policy="act", task="drawer_tidy", policy_args=(("device", "cpu"),)).as_run_config()
    assert plain["policy_args"] is None and on_cpu["policy_args"] == {"device": "cpu"}
    assert json.dumps(plain, sort_keys=True) != json.dumps(on_cpu, sort_keys=True)
