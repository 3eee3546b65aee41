"""The run store: a directory that survives interruption.

Layout: ``run.json`` (config, package versions, git revision, machine), ``episodes/`` (one
parquet file per finished episode, written to a hidden temp file and renamed into place, so a
kill -9 can never leave half a record), then ``summary.json``, ``report.md``, ``report.html``,
``success.png`` and ``videos/``. Re-running the same command skips the episodes on disk.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path

import pandas as pd

from pi0bench.errors import UserError

# Config keys that decide what an episode is: a run directory only resumes with the same ones.
IDENTITY_KEYS = ("policy", "task", "seed", "execute_steps", "image_size", "cameras", "checkpoint",
                 "policy_args", "realtime", "perturbations", "batch_rows")
PACKAGES = ("pi0bench", "mujoco", "numpy", "gymnasium", "torch", "dm-control", "pandas", "robosuite")


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write via a hidden temp file in the same directory and rename (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def safe_name(name: str) -> str:
    """A policy name (which may be a URL or path) or task name ("robosuite/Lift") as a file-name
    component."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def cell_dir(out: Path, *parts: str) -> Path:
    """The one way a multi-run command (compare, regress, latency-sweep, robustness) names the
    eval run of one of its cells: OUT/cells/PART-PART (policy-task, or mode-latency, axis-level),
    each part file-name safe, so "robosuite/Lift" never nests a folder."""
    return Path(out) / "cells" / "-".join(safe_name(part) for part in parts)


def episode_stem(policy: str, task: str, seed: int, episode: int) -> str:
    """The file name (without suffix) of one episode's record and video."""
    return f"{safe_name(policy)}__{safe_name(task)}__s{seed}__e{episode:06d}"


def default_run_dir(policy: str, task: str, seed: int) -> Path:
    """Deterministic, so re-running the same command finds (and resumes) the same run."""
    return Path("results") / "runs" / f"{safe_name(policy)}-{safe_name(task)}-seed{seed}"


@cache
def code_revision() -> str:
    """The revision this process started on, read once: a command that writes several runs into
    the tree (a resumed compare rewrites earlier cells' run.json before it plays the next cell)
    must not call its own later runs dirty; the code it runs was loaded at the start anyway."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return rev + ("-dirty" if dirty else "")


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = ""
    return found


class RunStore:
    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.episodes_dir = self.dir / "episodes"

    def open(self, config: dict, overwrite: bool = False) -> dict:
        """Create the run, or check that the one on disk is the same run and resume it."""
        run_json = self.dir / "run.json"
        if overwrite and self.dir.exists():
            for path in self.episodes_dir.glob("*.parquet"):
                path.unlink()
            run_json.unlink(missing_ok=True)
        previous = json.loads(run_json.read_text()) if run_json.exists() else None
        if previous is not None:
            old = previous["config"]
            changed = [k for k in IDENTITY_KEYS if old.get(k) != config.get(k)]
            if changed:
                raise UserError(
                    f"{self.dir} holds a different run ({', '.join(f'{k}={old.get(k)!r}' for k in changed)}); "
                    "use another --out, or --overwrite to start it again")
            config = {**config, "episodes": max(config["episodes"], old.get("episodes", 0))}
        here = {
            "versions": _versions(),
            "git_revision": code_revision(),
            "machine": {"host": socket.gethostname(), "platform": platform.platform(),
                        "python": platform.python_version(), "cpus": os.cpu_count()},
        }
        if previous is None:
            record = {"config": config, **here, "created": pd.Timestamp.now("UTC").isoformat()}
        else:  # the provenance of the first episodes stays; other code or machines are added
            record = {**previous, "config": config}
            if any(previous.get(k) != v for k, v in here.items()):
                seen = previous.get("resumed_with", [])
                record["resumed_with"] = seen + ([here] if here not in seen else [])
        atomic_write_text(run_json, json.dumps(record, indent=2))
        self.episodes_dir.mkdir(parents=True, exist_ok=True)
        return record

    def has(self, policy: str, task: str, seed: int, episode: int) -> bool:
        stem = episode_stem(policy, task, seed, episode)
        return (self.episodes_dir / f"{stem}.parquet").exists()

    def write(self, record: dict) -> None:
        stem = episode_stem(record["policy"], record["task"], record["seed"], record["episode"])
        frame = pd.DataFrame([record])
        atomic_write_bytes(self.episodes_dir / f"{stem}.parquet", frame.to_parquet(index=False))

    def load(self) -> pd.DataFrame:
        files = sorted(self.episodes_dir.glob("*.parquet"))
        if not files:
            return pd.DataFrame()
        frame = pd.read_parquet(self.episodes_dir)
        return frame.sort_values(["policy", "task", "seed", "episode"]).reset_index(drop=True)

    def config(self) -> dict:
        run_json = self.dir / "run.json"
        if not run_json.exists():
            raise UserError(f"{self.dir} is not a run directory (no run.json); "
                            "pass the --out of an earlier `pi0bench eval`")
        return json.loads(run_json.read_text())["config"]
