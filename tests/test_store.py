"""run.json keeps the provenance of a run's first episodes when the run is resumed."""

from __future__ import annotations

import json

import pytest

from pi0bench import store
from pi0bench.store import RunStore

CONFIG = {"policy": "hold", "task": "drawer_tidy", "seed": 0, "episodes": 2}


def test_resuming_keeps_the_first_provenance_and_records_later_code(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "code_revision", lambda: "aaa")
    first = RunStore(tmp_path).open(CONFIG)
    RunStore(tmp_path).open(CONFIG)  # the same code again: nothing to add
    assert "resumed_with" not in json.loads((tmp_path / "run.json").read_text())
    monkeypatch.setattr(store, "code_revision", lambda: "bbb")
    RunStore(tmp_path).open({**CONFIG, "episodes": 5})
    RunStore(tmp_path).open({**CONFIG, "episodes": 5})
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["git_revision"] == "aaa" and run["created"] == first["created"]
    assert [r["git_revision"] for r in run["resumed_with"]] == ["bbb"]
    assert run["config"]["episodes"] == 5


def test_a_command_that_writes_into_the_tree_does_not_call_its_later_runs_dirty(tmp_path, monkeypatch):
    """A resumed compare rewrites the first cells' run.json (tracked files) before it plays the
    next cell; that cell must record the revision the command started on, not "-dirty"."""
    import subprocess

    calls = []

    def fake_git(args, **kwargs):
        calls.append(args)
        status = "" if len(calls) <= 2 else " M results/compare/cells/a/run.json"
        out = "abc123\n" if args[1] == "rev-parse" else status
        return subprocess.CompletedProcess(args, 0, stdout=out, stderr="")

    store.code_revision.cache_clear()
    monkeypatch.setattr(store.subprocess, "run", fake_git)
    try:
        first = RunStore(tmp_path / "a").open(CONFIG)
        second = RunStore(tmp_path / "b").open(CONFIG)
    finally:
        store.code_revision.cache_clear()
    assert first["git_revision"] == second["git_revision"] == "abc123"
    assert len(calls) == 2  # git is asked once per process


def test_a_blind_run_never_resumes_into_a_sighted_one(tmp_path):
    """`--cameras none` and the default cameras are different runs (they were both stored as
    None, so a blind run resumed into a sighted run's directory)."""
    from pi0bench.errors import UserError
    from pi0bench.evaluate import EvalConfig, evaluate

    evaluate(EvalConfig(policy="hold", task="drawer_tidy", episodes=1, cameras=(), out=tmp_path))
    with pytest.raises(UserError, match=r"holds a different run \(cameras=\[\]\)"):
        evaluate(EvalConfig(policy="hold", task="drawer_tidy", episodes=1, cameras=None, out=tmp_path))


def test_every_multi_run_command_names_its_cells_one_way(tmp_path):
    from pi0bench.store import cell_dir

    assert cell_dir(tmp_path, "random", "robosuite/Lift") == tmp_path / "cells" / "random-robosuite_Lift"
    assert cell_dir(tmp_path, "naive-100ms") == tmp_path / "cells" / "naive-100ms"
    assert cell_dir(tmp_path, "remote:ws://h:1", "drawer_tidy").parent == tmp_path / "cells"
