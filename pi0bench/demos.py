"""Scripted-expert demonstrations for training, with noise the expert has to recover from.

Each episode starts from the same kind of seeded initial state as an evaluation (but from
the demo seed, so training and evaluation states differ). At every control step the expert's
clean command is recorded as the action, and what is executed is that command plus smooth
noise on the arm joints (an Ornstein-Uhlenbeck process with stationary std `noise` rad): the
data then shows the expert pulling back towards its plan from states it would never visit on
its own. The executed command is recorded too (`action.executed`), with each episode's reset
seed in the episode table, so `pi0bench replay` can re-play a dataset exactly. Only episodes
the task scores as successes are kept.

Recording is parallel and resumable. Every attempt is written, as soon as it ends, to a
staging folder beside the dataset (`<out>.partial/`: the frames of a kept episode, or a
marker for a dropped one, each renamed into place whole); rerunning the same command after
Ctrl-C or kill -9 keeps every finished attempt and plays only the rest. An episode is a pure
function of (task, seed, index, noise), so the dataset is the same for any number of workers.
The dataset is assembled from the staged episodes, in index order, once all are done.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pi0bench.errors import UserError
from pi0bench.lerobot_dataset import Episode, LeRobotWriter
from pi0bench.registry import check_task, make_env, make_policy, make_task
from pi0bench.rollout import episode_seed
from pi0bench.store import atomic_write_bytes, atomic_write_text
from pi0bench.workers import run_in_processes

NOISE_CORRELATION = 0.1  # per control step: the noise wanders over ~10 steps
# Per task, the noise that still shows recovery while keeping most attempts (measured yields
# are in the README); other tasks default to DEFAULT_NOISE.
TASK_NOISE = {"drawer_tidy": 0.01, "paper_towel_replace": 0.01, "towel_fold": 0.003}
DEFAULT_NOISE = 0.01


@dataclass(frozen=True)
class DemoConfig:
    task: str
    episodes: int
    out: Path
    seed: int = 1
    image_size: int = 64
    noise: float | None = None  # None: the task's TASK_NOISE
    cameras: tuple[str, ...] | None = None
    workers: int = 1

    @property
    def noise_std(self) -> float:
        return TASK_NOISE.get(self.task, DEFAULT_NOISE) if self.noise is None else self.noise

    @property
    def staging(self) -> Path:
        out = Path(self.out)
        return out.with_name(f"{out.name}.partial")

    def recording(self) -> dict:
        """What determines the episodes (not how many workers play them): a resumed recording
        must match it."""
        return {"task": self.task, "seed": self.seed, "image_size": self.image_size,
                "noise": self.noise_std, "cameras": list(self.cameras) if self.cameras is not None else None}

    def validate(self) -> None:
        check_task(self.task)
        if self.episodes < 1:
            raise UserError(f"--episodes must be at least 1 (got {self.episodes})")
        if self.workers < 1:
            raise UserError(f"--workers must be at least 1 (got {self.workers})")
        if self.image_size < 16:
            raise UserError(f"--image-size must be at least 16 (got {self.image_size})")
        if self.noise is not None and self.noise < 0:
            raise UserError(f"--noise must be >= 0 (got {self.noise})")
        out = Path(self.out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UserError(f"{out} already exists and is not empty; choose another --out")


def record_episode(env, expert, seed: int, noise: float) -> tuple[dict, bool]:
    """Play one noisy expert episode; returns what it saw and did, and whether it succeeded."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    obs, info = env.reset(seed=seed)
    expert.reset(env.task.name, seed)
    arm = env.robot.arm_action_indices()
    offset = np.zeros(len(arm))
    low, high = env.action_space.low, env.action_space.high
    record = {"frames": {c: [] for c in env.cameras}, "states": [], "actions": [], "executed": []}
    done = False
    while not done:
        clean = np.asarray(expert.act(obs)[0], np.float32)
        for camera, image in obs["images"].items():
            record["frames"][camera].append(image)
        record["states"].append(obs["state"])
        record["actions"].append(clean)
        offset = (1 - NOISE_CORRELATION) * offset + noise * np.sqrt(
            2 * NOISE_CORRELATION) * rng.standard_normal(len(arm))
        executed = clean.copy()
        executed[arm] += offset
        executed = np.clip(executed, low, high)
        record["executed"].append(executed)
        obs, _, terminated, truncated, info = env.step(executed)
        done = terminated or truncated
    return record, bool(info["is_success"])


# -- staging: one file per finished attempt ------------------------------------------------
def _kept_path(staging: Path, episode: int) -> Path:
    return staging / f"{episode:06d}.kept.npz"


def _dropped_path(staging: Path, episode: int) -> Path:
    return staging / f"{episode:06d}.dropped"


def _finished(staging: Path, episode: int) -> bool | None:
    """True (kept), False (dropped) or None (not played yet)."""
    if _kept_path(staging, episode).is_file():
        return True
    return False if _dropped_path(staging, episode).is_file() else None


def _stage(staging: Path, episode: int, record: dict, success: bool) -> None:
    if not success:
        atomic_write_text(_dropped_path(staging, episode), f"{len(record['actions'])} steps\n")
        return
    arrays = {"states": np.stack(record["states"]), "actions": np.stack(record["actions"]),
              "executed": np.stack(record["executed"])}
    arrays.update({f"frames.{c}": np.stack(f) for c, f in record["frames"].items()})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(_kept_path(staging, episode), buffer.getvalue())


def _load_staged(path: Path, cameras: tuple[str, ...], task: str, seed: int) -> Episode:
    with np.load(path, allow_pickle=False) as arrays:
        return Episode(frames={c: list(arrays[f"frames.{c}"]) for c in cameras},
                       states=list(arrays["states"]), actions=list(arrays["actions"]), task=task,
                       executed=list(arrays["executed"]), seed=seed)


# -- workers -------------------------------------------------------------------------------
class _Recorder:
    """An env and the expert, built once per process, playing attempts one after another."""

    def __init__(self, config: DemoConfig):
        self.config = config
        self.env = make_env(config.task, cameras=config.cameras, image_size=config.image_size)
        self.expert = make_policy("scripted", self.env)

    def run(self, episode: int) -> tuple[int, bool]:
        seed = episode_seed(self.config.task, self.config.seed, episode)
        record, success = record_episode(self.env, self.expert, seed, self.config.noise_std)
        _stage(self.config.staging, episode, record, success)
        return episode, success

    def close(self) -> None:
        self.env.close()


def _open_staging(config: DemoConfig) -> None:
    """Create the staging folder, or check that the one there is this same recording."""
    staging = config.staging
    marker = staging / "recording.json"
    wanted = config.recording()
    if marker.is_file():
        found = json.loads(marker.read_text())
        if found != wanted:
            differ = ", ".join(f"{k} {found.get(k)!r} → {wanted[k]!r}" for k in wanted if found.get(k) != wanted[k])
            raise UserError(f"{staging} holds a different recording ({differ}); rerun it with the same "
                            f"options to resume, or delete {staging} to start over")
        return
    staging.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps(wanted, indent=2))


def record_demos(config: DemoConfig, console: Console | None = None) -> dict:
    """Record `config.episodes` attempts (resuming any already staged) and write the
    successful ones as a LeRobot v3.0 dataset; returns the counts."""
    config.validate()
    console = console or Console(stderr=True)
    _open_staging(config)
    staging = config.staging
    done = {e: _finished(staging, e) for e in range(config.episodes)}
    todo = [e for e, result in done.items() if result is None]
    resumed = config.episodes - len(todo)
    if resumed:
        console.print(f"resuming {staging}: {resumed} attempts already finished, {len(todo)} to play")
    columns = (TextColumn(f"[bold]demos {config.task}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("kept {task.fields[kept]}/{task.completed:.0f}"), TextColumn("eta"),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        kept_so_far = sum(1 for r in done.values() if r)
        task = bar.add_task("demos", total=config.episodes, completed=resumed, kept=kept_so_far)

        def on_done(episode: int, success: bool) -> None:
            done[episode] = success
            bar.update(task, advance=1, kept=sum(1 for r in done.values() if r))

        run_in_processes(partial(_Recorder, config), todo, config.workers, lambda result: on_done(*result))
    kept = [e for e in range(config.episodes) if done[e]]
    console.print(f"yield: {len(kept)} of {config.episodes} demonstrations succeeded "
                  f"({100.0 * len(kept) / config.episodes:.0f} %) at noise {config.noise_std:g} rad")
    if not kept:
        raise UserError(f"none of the {config.episodes} episodes succeeded, so nothing was "
                        "written; try a lower --noise or more --episodes")
    _write_dataset(config, kept)
    shutil.rmtree(staging)
    return {"attempted": config.episodes, "kept": len(kept), "out": str(config.out)}


def _write_dataset(config: DemoConfig, kept: list[int]) -> None:
    task = make_task(config.task)
    robot = task.make_robot()
    cameras = tuple(robot.default_cameras if config.cameras is None else config.cameras)
    instruction = task.instruction
    names = _action_names(robot)
    writer = LeRobotWriter(Path(config.out), fps=robot.control_hz, robot_type=robot.name,
                           cameras=cameras, image_size=config.image_size,
                           state_names=names, action_names=names,
                           source={**config.recording(), "episodes_attempted": config.episodes})
    for episode in kept:
        path = _kept_path(config.staging, episode)
        seed = episode_seed(config.task, config.seed, episode)
        writer.add_episode_loader(lambda path=path, seed=seed: _load_staged(path, cameras, instruction, seed))
    writer.close()


def _action_names(robot) -> list[str]:
    """One name per action (and state) dimension: the joint names, and `<arm prefix>gripper`
    for each arm's jaw opening (e.g. left/waist ... left/gripper)."""
    names = [""] * robot.action_dim
    joints = iter(robot.joint_names)
    for sl, gripper in zip(robot.arm_slices, robot.gripper_indices):
        for i in range(sl.start, sl.stop):
            names[i] = next(joints)
        prefix = names[sl.start].rpartition("/")[0]
        names[gripper] = f"{prefix}/gripper" if prefix else "gripper"
    return names
