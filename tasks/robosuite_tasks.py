"""The `robosuite/<Env>` task family: robosuite's standard tasks, evaluated through the project's
loop (the adapter is `pi0bench.envs.robosuite_env`, the MuJoCo compatibility fixes are in
`pi0bench.envs.robosuite_compat`).

Each task is robosuite's environment with robosuite's own settings (default robots' controllers,
horizon, control rate, initial-state randomisation); the project adds only a prompt and reads
success from robosuite's `_check_success()`. robosuite is an optional extra: without it these
names are still known, and using one says how to install it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import metadata

from pi0bench.envs.robosuite_compat import INSTALL_HINT, ROBOSUITE_VERSION, import_robosuite
from pi0bench.errors import UserError
from pi0bench.tasks.base import Stage

FAMILY = "robosuite"
BUILD_SEED = 0  # seeds what robosuite draws while building a model: the same in every process


@dataclass(frozen=True)
class RobosuiteTask:
    """A robosuite environment as a task: one rubric point, robosuite's success."""

    env_name: str  # robosuite's environment name
    robots: tuple[str, ...]
    instruction: str
    stages: tuple[Stage, ...] = (Stage("success"),)

    @property
    def name(self) -> str:
        return f"{FAMILY}/{self.env_name}"

    @property
    def max_points(self) -> float:
        return float(sum(s.points for s in self.stages))

    @property
    def episode_seconds(self) -> float:
        """robosuite's horizon over its control rate (its defaults for this environment)."""
        robot, horizon = _settings(self)
        return horizon / robot.control_hz

    def make_robot(self):
        return _settings(self)[0]

    def build(self):
        """robosuite's environment, built without its own cameras and renderer (the adapter
        renders only the frames a policy reads) and reset softly (the model is built once)."""
        robosuite = import_robosuite()
        return robosuite.make(self.env_name, robots=list(self.robots), has_renderer=False,
                              has_offscreen_renderer=False, use_camera_obs=False, use_object_obs=False,
                              hard_reset=False, seed=BUILD_SEED)

    def expert(self, env):
        raise UserError(f"{self.name} has no scripted expert; evaluate random, hold or your own policy "
                        "(e.g. remote:ws://HOST:PORT) on it")


@functools.cache
def _settings(task: RobosuiteTask):
    """(robots, horizon) as robosuite sets them, read once per process from a built env."""
    from pi0bench.envs.robosuite_env import describe_robots

    suite = task.build()
    try:
        return describe_robots(suite), int(suite.horizon)
    finally:
        suite.close()


TASKS: dict[str, RobosuiteTask] = {task.name: task for task in (
    RobosuiteTask("Lift", ("Panda",), "lift the red cube"),
    RobosuiteTask("Stack", ("Panda",), "stack the red cube on top of the green cube"),
    RobosuiteTask("Door", ("Panda",), "open the door"),
    RobosuiteTask("PickPlaceCan", ("Panda",), "pick up the can and place it in its bin"),
    RobosuiteTask("NutAssemblySquare", ("Panda",), "put the square nut onto the square peg"),
    RobosuiteTask("TwoArmLift", ("Panda", "Panda"), "lift the pot by its two handles"),
)}


def unavailable() -> str | None:
    """Why these tasks cannot run here (with the fix), or None when they can. Reads the
    installed version only, so listing tasks stays fast."""
    try:
        found = metadata.version("robosuite")
    except metadata.PackageNotFoundError:
        return f"robosuite tasks ({', '.join(TASKS)}) need robosuite {ROBOSUITE_VERSION}: {INSTALL_HINT}"
    if found != ROBOSUITE_VERSION:
        return f"robosuite tasks need robosuite {ROBOSUITE_VERSION}, found {found}: {INSTALL_HINT}"
    return None


def check_task(name: str) -> str:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; robosuite tasks: {', '.join(TASKS)}")
    reason = unavailable()
    if reason:
        raise UserError(reason)
    return name


def make_task(name: str) -> RobosuiteTask:
    return TASKS[check_task(name)]


def make_env(name: str, cameras: tuple[str, ...] | None = None, image_size: int = 128):
    from pi0bench.envs.robosuite_env import RobosuiteEnv

    return RobosuiteEnv(make_task(name), cameras=cameras, image_size=image_size)
