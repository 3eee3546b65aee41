"""Scripted-expert demonstrations for training, with noise the expert has to recover from.

Each episode starts from the same kind of seeded initial state as an evaluation (but from
the demo seed, so training and evaluation states differ). At every control step the expert's
clean command is recorded as the action, and what is executed is that command plus smooth
noise on the arm joints (an Ornstein-Uhlenbeck process with stationary std `noise` rad): the
data then shows the expert pulling back towards its plan from states it would never visit on
its own. Only episodes the task scores as successes are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from pi0bench.errors import UserError
from pi0bench.lerobot_dataset import LeRobotWriter
from pi0bench.registry import check_task, make_env, make_policy
from pi0bench.rollout import episode_seed

NOISE_CORRELATION = 0.1  # per control step: the noise wanders over ~10 steps


@dataclass(frozen=True)
class DemoConfig:
    task: str
    episodes: int
    out: Path
    seed: int = 1
    image_size: int = 64
    noise: float = 0.01
    cameras: tuple[str, ...] | None = None

    def validate(self) -> None:
        check_task(self.task)
        if self.episodes < 1:
            raise UserError(f"--episodes must be at least 1 (got {self.episodes})")
        if self.image_size < 16:
            raise UserError(f"--image-size must be at least 16 (got {self.image_size})")
        if self.noise < 0:
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
    record = {"frames": {c: [] for c in env.cameras}, "states": [], "actions": []}
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
        obs, _, terminated, truncated, info = env.step(np.clip(executed, low, high))
        done = terminated or truncated
    return record, bool(info["is_success"])


def record_demos(config: DemoConfig, console: Console | None = None) -> dict:
    """Record `config.episodes` attempts and write the successful ones as a LeRobot v3.0
    dataset; returns the counts."""
    config.validate()
    console = console or Console(stderr=True)
    env = make_env(config.task, cameras=config.cameras, image_size=config.image_size)
    expert = make_policy("scripted", env)
    robot = env.robot
    action_names = _action_names(robot)
    writer = LeRobotWriter(Path(config.out), fps=robot.control_hz, robot_type=robot.name,
                           cameras=env.cameras, image_size=config.image_size,
                           state_names=action_names, action_names=action_names)
    kept = 0
    try:
        for episode in range(config.episodes):
            seed = episode_seed(config.task, config.seed, episode)
            record, success = record_episode(env, expert, seed, config.noise)
            if success:
                writer.add_episode(record["frames"], record["states"], record["actions"],
                                   env.task.instruction)
                kept += 1
            console.print(f"episode {episode}: {'kept' if success else 'dropped (not a success)'}"
                          f" — {kept}/{episode + 1} kept")
        console.print(f"yield: {kept} of {config.episodes} demonstrations succeeded "
                      f"({100.0 * kept / config.episodes:.0f} %)")
        if not kept:
            raise UserError(f"none of the {config.episodes} episodes succeeded, so nothing was "
                            "written; try a lower --noise or more --episodes")
        writer.close()
    finally:
        env.close()
    return {"attempted": config.episodes, "kept": kept, "out": str(config.out)}


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
