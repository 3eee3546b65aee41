"""`pi0bench regress`: unchanged code passes, a policy whose grippers never close fails (exit 1),
and a malformed reference is one clear error."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from pi0bench import registry
from pi0bench.cli import app
from pi0bench.errors import UserError
from pi0bench.regress import judge, read_reference


class Gripless:
    """The scripted expert with both ALOHA jaws held open: it can reach but never hold."""

    def __init__(self, inner):
        self.inner, self.execute_steps = inner, inner.execute_steps
        self.metadata = dict(inner.metadata, name="gripless")

    def reset(self, task: str, seed: int) -> None:
        self.inner.reset(task, seed)

    def act(self, obs: dict) -> np.ndarray:
        chunk = np.array(self.inner.act(obs), dtype=np.float32, copy=True)
        chunk[..., [6, 13]] = 1.0
        return chunk


def make_gripless(env):
    from pi0bench.policies.scripted import make_scripted

    return Gripless(make_scripted(env))


def test_unchanged_code_passes_and_a_broken_policy_fails(tmp_path, monkeypatch):
    reference = tmp_path / "ci.json"
    reference.write_text(json.dumps({"cells": [{"policy": "scripted", "task": "paper_towel_replace",
                                                "episodes": 6, "cameras": []}]}))
    runner = CliRunner()
    common = ["--reference", str(reference), "--out", str(tmp_path / "runs")]
    created = runner.invoke(app, ["regress", *common, "--update"])
    assert created.exit_code == 0, created.output
    cell = json.loads(reference.read_text())["cells"][0]
    assert sum(cell["success"]) >= 5  # the expert's measured episodes are now the reference

    unchanged = runner.invoke(app, ["regress", *common])
    assert unchanged.exit_code == 0, unchanged.output
    assert "REGRESSED" not in unchanged.output

    real_load = registry._load
    monkeypatch.setattr(registry, "_load", lambda target: make_gripless
                        if target == registry.POLICIES["scripted"][0] else real_load(target))
    broken = runner.invoke(app, ["regress", *common])
    assert broken.exit_code == 1 and "REGRESSED" in broken.output


def test_judge_needs_both_significance_and_effect():
    ref = {"policy": "p", "task": "t", "success": [1] * 20, "score": [1.0] * 20}
    slightly = {"policy": "p", "task": "t", "success": [1] * 19 + [0], "score": [1.0] * 19 + [0.9]}
    assert not judge(ref, slightly, 0.05, 0.10).regressed  # one episode: neither significant nor large
    much = {"policy": "p", "task": "t", "success": [0] * 8 + [1] * 12, "score": [0.2] * 8 + [1.0] * 12}
    result = judge(ref, much, 0.05, 0.10)
    assert result.regressed and result.p_success == pytest.approx(0.5**8)
    better = {"policy": "p", "task": "t", "success": [1] * 20, "score": [1.0] * 20}
    assert judge({**ref, "success": [0] * 20, "score": [0.0] * 20}, better, 0.05, 0.1).regressed is False


def test_a_malformed_reference_is_one_clear_error(tmp_path):
    path = tmp_path / "ci.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match="is not a regression reference"):
        read_reference(path)
    with pytest.raises(UserError, match="no reference at"):
        read_reference(tmp_path / "missing.json")
