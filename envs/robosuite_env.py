"""robosuite's standard tasks behind the project's env contract, so they run through the same
rollout loop, workers, run store and report as the project's own tasks.

- Observation: ``{"images": {camera: HxWx3 uint8}, "state": float32[D], "prompt": str}``. The
  images are rendered by the project's CPU renderer from robosuite's own cameras (upright, as
  robosuite's "opencv" image convention; its default "opengl" convention is upside down). The
  state is robosuite's proprioception, every robot's ``robotN_proprio-state`` in robot order
  (`metadata["state"]` names its parts).
- Action: robosuite's controller action, unchanged: its composite controller's parts in robot
  order, bounded by robosuite's `action_spec` (`metadata["action"]` names each slice and its
  controller, so a policy knows whether it sends OSC or joint commands).
- Success: robosuite's `_check_success()`, scored as one point out of one. As for the project's
  tasks, the episode terminates when it is earned; it is truncated at robosuite's horizon.
- Seeds: the robosuite model is built once, from a fixed seed (`RobosuiteTask.build`: what it
  draws at build time, such as Lift's cube size, is the same everywhere); each
  `reset(seed=...)` reseeds robosuite's random generator, which draws the object placements and
  the robot's initial joint noise, so an episode's initial state depends on its seed only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import mujoco
import numpy as np
from gymnasium import spaces

from pi0bench.envs.camera_env import CameraEnv
from pi0bench.envs.description import EnvDescription



class SuiteTask(Protocol):
    """What the env needs of a robosuite task (tasks/robosuite_tasks.py)."""

    name: str
    instruction: str
    max_points: float

    def build(self): ...


@dataclass(frozen=True)
class ActionPart:
    """One slice of the action vector: which robot part it drives and with which controller."""

    robot: int
    part: str  # robosuite's part name: "right", "right_gripper", ...
    controller: str  # robosuite's controller type: "OSC_POSE", "JOINT_POSITION", "GRIP", ...
    start: int
    stop: int

    def to_dict(self) -> dict:
        return {"robot": self.robot, "part": self.part, "controller": self.controller,
                "start": self.start, "stop": self.stop}


@dataclass(frozen=True)
class RobosuiteRobot:
    """The robots of a robosuite task as the loop and policies see them (what `Robot` is for the
    project's tasks): action size and layout, control rate and cameras, all read from robosuite."""

    name: str  # "robosuite-Panda", "robosuite-Panda-Panda": checkpoints are keyed by robot name
    action_dim: int
    control_hz: float
    cameras: tuple[str, ...]
    default_cameras: tuple[str, ...]
    action_parts: tuple[ActionPart, ...]

    @property
    def controller(self) -> str:
        """The action layout in one line, e.g. "OSC_POSE[0:6] GRIP[6:7]"."""
        return " ".join(f"{p.controller}[{p.start}:{p.stop}]" for p in self.action_parts)

    @property
    def still_action(self) -> np.ndarray:
        """The action that keeps the robots where they are: robosuite's default controllers take
        relative commands (OSC and gripper deltas), so all zeros."""
        return np.zeros(self.action_dim, np.float32)


def describe_robots(suite_env) -> RobosuiteRobot:
    """Read a built robosuite env's action layout, control rate and cameras."""
    robots = [robot.name for robot in suite_env.robots]
    parts, offset = [], 0
    for index, robot in enumerate(suite_env.robots):
        splits = robot.composite_controller._action_split_indexes
        for part, (start, stop) in splits.items():
            kind = robot.part_controller_config[part]["type"]
            parts.append(ActionPart(index, part, kind, offset + start, offset + stop))
        offset += robot.action_dim
    model = suite_env.sim.model._model
    cameras = tuple(model.camera(i).name for i in range(model.ncam))
    default = ("agentview", *(f"robot{i}_eye_in_hand" for i in range(len(robots))))
    return RobosuiteRobot(name="-".join(("robosuite", *robots)), action_dim=offset,
                          control_hz=float(suite_env.control_freq), cameras=cameras,
                          default_cameras=default, action_parts=tuple(parts))


def _visual_geoms_only() -> mujoco.MjvOption:
    """What robosuite's own renderer shows: visual geoms (group 1), not collision ones (group 0)."""
    option = mujoco.MjvOption()
    option.geomgroup[0] = 0
    return option


class RobosuiteEnv(CameraEnv):
    def __init__(self, task: SuiteTask, cameras: tuple[str, ...] | None = None,
                 image_size: int | tuple[int, int] = 128, render_mode: str | None = None):
        """`task`: a robosuite task (tasks/robosuite_tasks.py), given, never looked up."""
        self.task = task
        self.suite = self.task.build()
        self.robot = describe_robots(self.suite)
        self._init_view(cameras, image_size, render_mode)
        self.render_option = _visual_geoms_only()
        self.model = self.suite.sim.model._model
        self.data = self.suite.sim.data._data
        self._check_model_cameras()
        self.max_steps = int(self.suite.horizon)

        self._proprio = [f"robot{i}_proprio-state" for i in range(len(self.suite.robots))]
        self._suite_obs = suite_obs = self.suite.observation_spec()
        state_dim = sum(len(suite_obs[key]) for key in self._proprio)
        low, high = self.suite.action_spec
        self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self.observation_space = self._observation_space(state_dim)
        self.description = EnvDescription(
            task=task.name, robot=self.robot.name, action_dim=self.robot.action_dim, state_dim=state_dim,
            control_hz=self.robot.control_hz, cameras=self.cameras, image_size=(self.height, self.width),
            instruction=task.instruction, stages=tuple(s.name for s in task.stages), max_steps=self.max_steps,
            action_low=tuple(float(v) for v in low), action_high=tuple(float(v) for v in high),
            still_action=tuple(float(v) for v in self.robot.still_action), expert=False)
        self.metadata = {
            **self.metadata, "render_fps": self.robot.control_hz,
            "action": [part.to_dict() for part in self.robot.action_parts],
            "state": [(name, int(np.size(suite_obs[name]))) for name in self._state_parts(suite_obs)],
        }
        self.steps = 0
        self.success = False

    # -- gymnasium API -----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # Reseed robosuite's generator in place: its placement samplers and robots hold it.
        self.suite.rng.bit_generator.state = np.random.default_rng(
            self.np_random.integers(2**63)).bit_generator.state
        self._suite_obs = self.suite.reset()
        self.steps = 0
        self.success = bool(self.suite._check_success())
        return self.observe(), self._info()

    def hold_action(self) -> np.ndarray:
        """What real-time mode sends while the first policy call of an episode runs."""
        return self.robot.still_action

    def advance(self, action) -> tuple[float, bool, bool, dict]:
        """`step` without rendering (the rollout loop's path for actions whose observation no
        policy reads)."""
        self._suite_obs, _, _, _ = self.suite.step(np.asarray(action, dtype=np.float64))
        self.steps += 1
        before = self.success
        self.success = bool(self.suite._check_success())
        truncated = self.steps >= self.max_steps and not self.success
        return float(self.success and not before), self.success, truncated, self._info()

    def close(self):
        super().close()
        self.suite.close()

    # -- helpers -----------------------------------------------------------------------
    @property
    def points(self) -> float:
        return float(self.success)

    def observe(self) -> dict:
        return {
            "images": self._render(self.cameras),
            "state": np.concatenate([self._suite_obs[key] for key in self._proprio]).astype(np.float32),
            "prompt": self.task.instruction,
        }

    def _state_parts(self, suite_obs: dict) -> list[str]:
        """The observables that make up each robot's proprio-state, in order."""
        modalities = {key.removesuffix("-state") for key in self._proprio}
        return [name for name, observable in self.suite._observables.items()
                if observable.modality in modalities and observable.is_enabled() and name in suite_obs]

    def _info(self) -> dict:
        return {"stages": {"success": self.success}, "stage_points": {"success": float(self.points)},
                "points": self.points, "max_points": self.task.max_points, "is_success": self.success,
                "sim_seconds": float(self.data.time)}
