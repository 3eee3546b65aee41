"""`pi0bench replay`: does a dataset match the environment it claims to come from?

Each episode of a demos dataset is re-played open-loop from its recorded reset seed, twice:
with the commands that were executed (action + the recording noise, `action.executed`),
which must reproduce the recorded states exactly and succeed every time, and with the
recorded (clean) actions alone, whose success rate says how much of the task the labels
carry without feedback. A dataset that fails the first check was recorded with other code or
another simulator, or is corrupt; no policy can be expected to learn from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pi0bench.errors import UserError
from pi0bench.lerobot_dataset import DATA_FILE, EPISODES_FILE, read_meta
from pi0bench.registry import make_env


@dataclass(frozen=True)
class ReplayResult:
    episode: int
    seed: int
    executed_success: bool
    executed_state_error: float  # max |state - recorded state| over the episode
    clean_success: bool


def replay_dataset(root: Path, episodes: int | None = None) -> list[ReplayResult]:
    info, _ = read_meta(root)
    source = info.get("pi0bench")
    if not source or "action.executed" not in info["features"]:
        raise UserError(f"{root} has no recorded seeds and executed actions to replay; "
                        "record it again with this version's `pi0bench demos`")
    frames = pd.read_parquet(Path(root) / DATA_FILE)
    table = pd.read_parquet(Path(root) / EPISODES_FILE)
    env = make_env(source["task"], cameras=())
    results = []
    try:
        for row in table.head(episodes).itertuples():
            rows = frames[frames["episode_index"] == row.episode_index]
            states = np.stack(rows["observation.state"].to_numpy())
            executed = np.stack(rows["action.executed"].to_numpy())
            success, error = _play(env, int(row.seed), executed, states)
            clean, _ = _play(env, int(row.seed), np.stack(rows["action"].to_numpy()), None)
            results.append(ReplayResult(int(row.episode_index), int(row.seed), success, error, clean))
    finally:
        env.close()
    return results


def _play(env, seed: int, actions: np.ndarray, states: np.ndarray | None) -> tuple[bool, float]:
    obs, info = env.reset(seed=seed)
    error = 0.0
    for t, action in enumerate(actions):
        if states is not None:
            error = max(error, float(np.abs(obs["state"] - states[t]).max()))
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return bool(info["is_success"]), error
