"""What a latency sweep and a robustness run share: one policy on one task, played as several
eval cells (OUT/cells/NAME) on the same initial states, and their record in OUT/CONFIG."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from pi0bench.errors import UserError
from pi0bench.evaluate import EvalConfig
from pi0bench.stats import summarize_cell
from pi0bench.store import RunStore, atomic_write_text, cell_dir

# fields stored as lists in JSON and as tuples in the config
_TUPLES = ("cameras", "latencies_ms", "modes", "axes", "levels")


@dataclass(frozen=True, kw_only=True)
class CellRun:
    policy: str
    task: str
    out: Path
    episodes: int = 30
    seed: int = 0
    workers: int = 1
    image_size: int = 128
    cameras: tuple[str, ...] | None = None
    checkpoint: str | None = None
    policy_args: tuple[tuple[str, Any], ...] = ()
    timeout_s: float | None = 30.0
    backend: str = "local"
    address: str | None = None

    def eval_config(self, name: str, **cell: Any) -> EvalConfig:
        """The eval run of the cell OUT/cells/NAME, with this run's options and the cell's own."""
        return EvalConfig(policy=self.policy, task=self.task, episodes=self.episodes, seed=self.seed,
                          workers=self.workers, out=cell_dir(self.out, name), image_size=self.image_size,
                          cameras=self.cameras, timeout_s=self.timeout_s, checkpoint=self.checkpoint,
                          policy_args=self.policy_args, backend=self.backend, address=self.address, **cell)

    def validate(self) -> None:
        """Subclasses check their own options and every cell's eval config."""

    def start(self, config_file: str) -> Path:
        """Validate, create the directory and record the config there; returns the directory."""
        self.validate()
        out = Path(self.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / config_file, json.dumps(self.to_dict(), indent=2))
        return out

    def to_dict(self) -> dict:
        """What the config file records (not `out`: the directory is read where it lies, so it
        may be moved)."""
        record = {k: v for k, v in asdict(self).items() if k != "out"}
        for key in _TUPLES:
            if key in record and record[key] is not None:
                record[key] = list(record[key])
        record["policy_args"] = dict(self.policy_args) or None
        return record

    @classmethod
    def read(cls, out: Path, config_file: str, kind: str):
        """The config of the directory `out`, or a one-line error if it is not one of `kind`."""
        path = Path(out) / config_file
        if not path.is_file():
            raise UserError(f"{out} is not a {kind} directory (no {config_file})")
        raw = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if k in _TUPLES and v is not None else v for k, v in raw.items() if k in known}
        values["policy_args"] = tuple((raw.get("policy_args") or {}).items())
        return cls(**{**values, "out": Path(out)}), raw


def load_cells(run: CellRun) -> dict[tuple, pd.DataFrame]:
    """(first two fields of each `run.cells()` entry) -> that cell's first `run.episodes`
    episodes in index order, for the cells that have any on disk."""
    loaded = {}
    for *key, cell in run.cells():
        if (Path(cell.out) / "episodes").is_dir():
            frame = RunStore(cell.out).load()
            loaded[tuple(key)] = frame[frame["episode"] < run.episodes].sort_values("episode")
    return loaded


def outcome_columns(episodes: pd.DataFrame) -> dict:
    """A cell's success and score with their intervals as flat columns (summary.csv rows)."""
    cell = summarize_cell(episodes)
    return {"episodes": cell["episodes"], "success_rate": cell["success_rate"],
            "success_ci_low": cell["success_ci"][0], "success_ci_high": cell["success_ci"][1],
            "mean_score": cell["mean_score"], "score_ci_low": cell["score_ci"][0],
            "score_ci_high": cell["score_ci"][1], "errors": cell["errors"]}
