"""`pi0bench regress`: unchanged code passes, a policy whose grippers never close fails (exit 1),
and a malformed reference is one clear error."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pi0bench import registry
from pi0bench.cli import app
from pi0bench.errors import UserError
from pi0bench.regress import judge, read_reference

REPO = Path(__file__).resolve().parents[1]


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


def _simulated_power(k: int, n: int, q: float, level: float = 0.05, min_effect: float = 0.10,
                     draws: int = 3_000) -> float:
    """How often judge() fails a cell whose k reference successes are each lost with prob q."""
    rng = np.random.default_rng(0)
    ref = {"policy": "p", "task": "t", "success": [1] * k + [0] * (n - k), "score": [1.0] * k + [0.0] * (n - k)}
    failed = 0
    for _ in range(draws):
        lost = rng.random(k) < q
        new = {"policy": "p", "task": "t", "success": [int(not x) for x in lost] + [0] * (n - k),
               "score": [0.0 if x else 1.0 for x in lost] + [0.0] * (n - k)}
        failed += judge(ref, new, level, min_effect).regressed
    return failed / draws


@pytest.mark.parametrize("n", [10, 30, 50])
def test_detectable_drop_is_the_drop_failed_with_80_percent_power(n):
    from pi0bench.regress import detectable_drop

    drop, measure = detectable_drop([1] * n, [1.0] * n)
    assert measure == "success"
    assert _simulated_power(n, n, drop * 1.1) > 0.8 > _simulated_power(n, n, drop * 0.9)


def test_cells_that_can_never_fail_are_named():
    from pi0bench.regress import detectable_drop, episodes_needed

    assert detectable_drop([1] * 4, [1.0] * 4) == (None, "success")  # 0.5^4 = 0.0625 > 0.05
    assert detectable_drop([0] * 30, [0.0] * 30) == (None, "score")  # nothing to lose
    assert detectable_drop([1] * 50, [1.0] * 50)[0] < 0.15  # the committed expert cells' size
    assert detectable_drop([1] * 10, [1.0] * 10)[0] > 0.5  # what 10 episodes allowed: 100 % -> 60 % unflagged
    assert episodes_needed(1.0) == 5 and episodes_needed(0.5) == 10


def test_update_refuses_a_cell_that_can_never_fail(tmp_path):
    reference = tmp_path / "ci.json"
    reference.write_text(json.dumps({"cells": [{"policy": "scripted", "task": "drawer_tidy",
                                                "episodes": 4, "cameras": []}]}))
    result = CliRunner().invoke(app, ["regress", "--reference", str(reference), "--out", str(tmp_path / "r"),
                                      "--update"])
    assert isinstance(result.exception, UserError)  # the CLI's main prints it as one line, exit 2
    said = str(result.exception)
    assert "scripted/drawer_tidy (4 episodes) can never fail" in said and "at least 5 episodes" in said
    assert "success" not in json.loads(reference.read_text())["cells"][0]  # nothing was stored


def test_a_cell_with_too_few_successes_to_lose_is_gated_on_its_score():
    """One success in 30 can never fail a McNemar test, but 30 episodes that each earn 3 of 4
    points can fail a sign test: the cell is judged, and sized, on its score."""
    from pi0bench.regress import LEVEL, MIN_EFFECT, detectable_drop, judge

    success = [0] * 30
    success[12] = 1
    score = [0.75] * 30
    score[12] = 1.0
    drop, measure = detectable_drop(success, score)
    assert measure == "score" and 0.1 <= drop <= 0.25
    assert detectable_drop(success, [0.0] * 12 + [1.0] + [0.0] * 17) == (None, "success")
    reference = {"policy": "p", "task": "t", "success": success, "score": score}
    assert not judge(reference, reference, LEVEL, MIN_EFFECT).regressed
    worse = {**reference, "success": [0] * 30, "score": [s - 0.25 for s in score]}
    assert judge(reference, worse, LEVEL, MIN_EFFECT).regressed
    slightly = {**reference, "score": [s - 0.05 for s in score]}  # significant but under min_effect
    assert not judge(reference, slightly, LEVEL, MIN_EFFECT).regressed


def test_the_committed_gate_catches_a_15_point_expert_drop_on_every_task():
    from pi0bench.regress import detectable_drop, read_reference

    cells = read_reference(REPO / "results/reference/ci.json")["cells"]
    for task in ("drawer_tidy", "towel_fold", "paper_towel_replace"):
        (cell,) = [c for c in cells if c["policy"] == "scripted" and c["task"] == task]
        drop, measure = detectable_drop(cell["success"], cell["score"])
        assert measure == "success" and drop <= 0.15, (task, drop)


def test_the_committed_gate_has_a_learned_cell_that_sees_a_25_point_drop():
    """Every task's committed reference holds a learned cell that fails on a 25-point fall with
    power 0.8: towel_fold, paper_towel_replace and drawer_tidy (16, 15 and 11 successes in 30),
    all in success."""
    from pi0bench.regress import detectable_drop, read_reference

    cells = read_reference(REPO / "results/reference/ci.json")["cells"]
    for task in ("towel_fold", "paper_towel_replace", "drawer_tidy"):
        (cell,) = [c for c in cells if c["policy"] != "scripted" and c["task"] == task]
        drop, measure = detectable_drop(cell["success"], cell["score"])
        assert measure == "success" and drop is not None and drop <= 0.25, (task, drop, measure)


class Flaky(Gripless):
    """The scripted expert that, in one episode of five (chosen by the episode seed), keeps
    both jaws open: a real degradation of about 20 points in success."""

    def reset(self, task: str, seed: int) -> None:
        self.inner.reset(task, seed)
        self.broken = seed % 5 == 0

    def act(self, obs: dict) -> np.ndarray:
        chunk = np.array(self.inner.act(obs), dtype=np.float32, copy=True)
        if self.broken:
            for jaw in getattr(self, "jaws", [6, 13]):
                chunk[..., jaw] = 1.0
        return chunk


def make_flaky(env):
    from pi0bench.policies.scripted import make_scripted

    flaky = Flaky(make_scripted(env))
    flaky.jaws = list(env.robot.gripper_indices)
    return flaky


@pytest.mark.slow
@pytest.mark.parametrize("task", ["drawer_tidy", "towel_fold", "paper_towel_replace"])
def test_a_20_point_expert_degradation_fails_the_gate_on_every_task(task, tmp_path, monkeypatch):
    """Against the committed reference's first 30 episodes of the expert on this task (the
    same seeds), the flaky expert makes `regress` exit 1."""
    from pi0bench.regress import read_reference

    (cell,) = [c for c in read_reference(REPO / "results/reference/ci.json")["cells"]
               if c["policy"] == "scripted" and c["task"] == task]
    n = 30
    reference = tmp_path / "ci.json"
    reference.write_text(json.dumps({"cells": [{**cell, "episodes": n, "success": cell["success"][:n],
                                                "score": cell["score"][:n]}]}))
    real_load = registry._load
    monkeypatch.setattr(registry, "_load", lambda target: make_flaky
                        if target == registry.POLICIES["scripted"][0] else real_load(target))
    result = CliRunner().invoke(app, ["regress", "--reference", str(reference), "--out", str(tmp_path / "r"),
                                      "--workers", "2"])
    assert result.exit_code == 1 and "REGRESSED" in result.output, result.output
