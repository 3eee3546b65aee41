"""Committed results name the code they measure: every run.json under results/ records a
clean revision (no uncommitted changes) that is an ancestor of HEAD, so `git checkout REV`
gives back exactly the code that produced it."""

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


def committed_run_files() -> list[str]:
    listed = _git("ls-files", "results")
    assert listed.returncode == 0, f"not a git checkout: {listed.stderr}"
    return [p for p in listed.stdout.splitlines() if p.endswith("/run.json")]


def test_there_are_committed_runs_to_check():
    assert len(committed_run_files()) >= 3


@pytest.mark.parametrize("path", committed_run_files())
def test_a_committed_run_names_a_clean_ancestor_of_head(path):
    revision = json.loads((REPO / path).read_text())["git_revision"]
    assert not revision.endswith("-dirty"), f"{path} was played from uncommitted code ({revision})"
    known = _git("cat-file", "-e", f"{revision}^{{commit}}")
    assert known.returncode == 0, f"{path} names {revision}, which this repository does not have"
    ancestor = _git("merge-base", "--is-ancestor", revision, "HEAD")
    assert ancestor.returncode == 0, f"{path} names {revision}, which is not an ancestor of HEAD"
