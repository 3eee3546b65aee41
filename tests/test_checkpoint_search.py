"""Default checkpoints are found the way an installed package would find them: the folders of
$PI0BENCH_CHECKPOINTS first, then a checkout's results/checkpoints; when neither holds one,
one line says where it looked."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pi0bench import checkpoint
from pi0bench.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_the_variable_comes_before_the_checkout_and_a_miss_says_where_it_looked(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    shutil.copytree(checkpoint.CHECKOUT_CHECKPOINTS / "octo-tiny", mine / "octo-tiny")
    monkeypatch.setenv(checkpoint.SEARCH_PATH_VARIABLE, os.pathsep.join([str(tmp_path / "empty"), str(mine)]))
    assert checkpoint.resolve(None, "octo-tiny", "octo") == mine / "octo-tiny"
    monkeypatch.setattr(checkpoint, "CHECKOUT_CHECKPOINTS", tmp_path / "no-checkout")
    with pytest.raises(UserError) as caught:
        checkpoint.resolve(None, "pi0-small", "pi0")
    message = str(caught.value)
    assert "\n" not in message and str(mine) in message and "PI0BENCH_CHECKPOINTS=DIR" in message
    monkeypatch.delenv(checkpoint.SEARCH_PATH_VARIABLE)
    with pytest.raises(UserError, match=r"looked in nowhere \(\$PI0BENCH_CHECKPOINTS is unset"):
        checkpoint.resolve(None, "pi0-small", "pi0")


def test_an_explicit_checkpoint_must_exist(tmp_path):
    with pytest.raises(UserError, match="no act checkpoint at"):
        checkpoint.resolve(tmp_path / "nowhere", "act-small-drawer_tidy", "act")


@pytest.mark.slow  # a pip install: in `make test-slow` and .ci/run, not the default suite
def test_a_non_editable_install_finds_its_checkpoints_through_the_variable(tmp_path):
    """`pip install .` (not editable) into a fresh venv that borrows this venv's dependencies:
    with no checkout beside the installed package it says where it looked; with
    PI0BENCH_CHECKPOINTS set it builds the default act policy."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "borrowed.pth").write_text(ours + "\n")  # numpy, torch, mujoco... from this venv
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv*", ".git", "results", "tests", "docs",
                                                                "__pycache__", "*.egg-info", "build"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                              "--target", site, str(source)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    script = ("import pi0bench, pathlib; from pi0bench.registry import make_env, make_policy\n"
              "assert 'site-packages' in pi0bench.__file__ and 'source' not in pi0bench.__file__\n"
              "env = make_env('drawer_tidy', cameras=('base', 'wrist'), image_size=64)\n"
              "print(type(make_policy('act', env)).__name__)\n")
    env = {k: v for k, v in os.environ.items() if k != checkpoint.SEARCH_PATH_VARIABLE}
    missing = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert missing.returncode != 0 and "no act checkpoint 'act-small-drawer_tidy'" in missing.stderr
    assert "PI0BENCH_CHECKPOINTS is unset and this is no checkout" in missing.stderr
    env[checkpoint.SEARCH_PATH_VARIABLE] = str(checkpoint.CHECKOUT_CHECKPOINTS)
    found = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert found.returncode == 0 and found.stdout.strip() == "ActPolicy", found.stderr[-2000:]
