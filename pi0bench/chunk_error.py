"""Open-loop chunk error: how closely a checkpoint reproduces its demonstrations' actions.

The fit check (curve.py) says whether a policy succeeds on its own training states; when it
does not, this says why. On windows of the dataset it learned from, the policy sees the
recorded observation and predicts a chunk; the rows the rollout loop would execute are
compared with the recorded actions (mean absolute error per action dimension, in the robot's
own units). A second draw from another noise seed measures how much a sampling policy's
chunks vary for the same observation (0 for deterministic ones), and repeating the window's
first action ("hold") gives the scale of the motion a chunk covers. Policies that condition on
several frames and re-plan (DP, Octo) are given the window's consecutive frames, as in training,
and their whole plan is compared. A model whose error is
close to its spread has not yet narrowed its action distribution; one whose error is small
but whose closed loop fails drifts off the demonstrated states.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pi0bench import checkpoint
from pi0bench.curve import training_episodes
from pi0bench.errors import UserError
from pi0bench.lerobot_dataset import DemoDataset
from pi0bench.policies.replanning import ReplanningPolicy
from pi0bench.registry import describe_env, make_policy

SECOND_DRAW = 1_000_003  # offset of the second draw's episode seed


@dataclass(frozen=True)
class ChunkError:
    policy: str
    task: str
    windows: int
    rows: int  # rows compared per window: those the rollout loop executes
    error: list[float]  # mean |predicted − recorded| per action dimension
    spread: list[float]  # mean |draw 1 − draw 2| per action dimension
    hold: list[float]  # mean |first recorded action − recorded| per action dimension

    def to_dict(self) -> dict:
        return asdict(self)


def _observation(window: dict) -> dict:
    return {"images": {c: image.numpy() for c, image in window["images"].items()},
            "state": window["state"].numpy(), "prompt": window["prompt"]}


def _observations(window: dict, frames: int) -> list[dict]:
    """A history window (images [frames, H, W, 3], state [frames, S]) as the loop's
    observations, oldest first."""
    return [{"images": {c: image[k].numpy() for c, image in window["images"].items()},
             "state": window["state"][k].numpy(), "prompt": window["prompt"]} for k in range(frames)]


def _predict(policy, task: str, window: dict, seed: int) -> np.ndarray:
    """The rows one decision yields: a chunk policy's chunk, or a re-planning policy's plan
    from the window's frames."""
    policy.reset(task, seed)
    if isinstance(policy, ReplanningPolicy):
        return policy.plan(_observations(window, policy.window))
    return np.asarray(policy.act(_observation(window)), np.float32)


def _masked_mean(values: np.ndarray, valid: np.ndarray) -> list[float]:
    """[N, rows, D] absolute differences -> per-dimension means over the valid (N, rows)."""
    return [float(v) for v in values[valid].mean(axis=0)]


def chunk_error(checkpoint_dir: Path, data: Path, windows: int = 64, seed: int = 0,
                image_size: int = 64, policy_args: dict | None = None, rows: int | None = None) -> ChunkError:
    """Compare `windows` chunks predicted on windows drawn (seeded) from `data` with the
    recorded actions: their first `rows` rows (default: those the rollout loop executes), so
    that policies with different execution horizons can be compared on the same rows."""
    if windows < 1:
        raise UserError(f"--windows must be at least 1 (got {windows})")
    if rows is not None and rows < 1:
        raise UserError(f"--rows must be at least 1 (got {rows})")
    policy_name = checkpoint.read_config(checkpoint_dir).get("policy")
    task, _, _ = training_episodes(data)
    policy = make_policy(policy_name, describe_env(task, image_size=image_size), str(checkpoint_dir),
                         policy_args)
    replans = isinstance(policy, ReplanningPolicy)
    dataset = DemoDataset(data, chunk=100, history=policy.window if replans else 1)
    picks = np.random.default_rng(seed).choice(len(dataset), size=min(windows, len(dataset)), replace=False)
    predicted, second, recorded, pads = [], [], [], []
    for i, index in enumerate(picks):
        window = dataset[int(index)]
        predicted.append(_predict(policy, task, window, i))
        second.append(_predict(policy, task, window, i + SECOND_DRAW))
        recorded.append(window["action"].numpy())
        pads.append(window["action_is_pad"].numpy())
    length = len(predicted[0])
    if rows is not None and rows > length:
        raise UserError(f"--rows {rows} is more than the {length} rows a {policy_name} chunk has")
    executed = length if replans else min(getattr(policy, "execute_steps", None) or length, length)
    rows = rows or executed
    predicted, second = np.stack(predicted)[:, :rows], np.stack(second)[:, :rows]
    recorded, valid = np.stack(recorded)[:, :rows], ~np.stack(pads)[:, :rows]
    return ChunkError(policy=policy_name, task=task, windows=len(picks), rows=rows,
                      error=_masked_mean(np.abs(predicted - recorded), valid),
                      spread=_masked_mean(np.abs(predicted - second), valid),
                      hold=_masked_mean(np.abs(recorded[:, :1] - recorded), valid))
