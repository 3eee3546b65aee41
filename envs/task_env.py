"""The gymnasium environment every task runs in.

Observation: the contract in `camera_env` (images, state, prompt).
Action: float32[D] absolute joint targets + gripper openings in [0, 1], held for one control
period (physics at 2 ms, so 25 substeps at 20 Hz and 10 at 50 Hz).
Reward is the change in rubric points over the step (negative when one is lost); ``terminated`` is set when
every point is earned, ``truncated`` at the task's episode length, or at once when the simulation
diverged (``info["sim_diverged"]``: MuJoCo reset a state gone bad, so the episode is void).
"""

from __future__ import annotations

import mujoco
import numpy as np
from gymnasium import spaces

from pi0bench.envs.camera_env import CameraEnv
from pi0bench.envs.description import describe_task
from pi0bench.envs.perturb import Perturbation, Perturber

PHYSICS_TIMESTEP = 0.002
# MuJoCo's answer to a state gone bad (NaN, Inf or a huge position, velocity or acceleration):
# it warns, resets the whole simulation to the model's default state and carries on, so the
# rest of an episode would be scored on a scene nobody set up. The env reports it instead.
DIVERGENCE_WARNINGS = (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL,
                       mujoco.mjtWarning.mjWARN_BADQACC)


class TaskEnv(CameraEnv):
    def __init__(self, task: str = "drawer_tidy", cameras: tuple[str, ...] | None = None,
                 image_size: int | tuple[int, int] = 128, render_mode: str | None = None,
                 perturbations: tuple[Perturbation, ...] = ()):
        from pi0bench.tasks import make_own_task

        self.task = make_own_task(task) if isinstance(task, str) else task
        self.robot = self.task.make_robot()
        self._init_view(cameras, image_size, render_mode)
        self.perturber = Perturber(tuple(perturbations), self.task)

        spec = self.task.build_spec()
        self.perturber.edit_spec(spec)
        self.model = spec.compile()
        self.model.opt.timestep = PHYSICS_TIMESTEP
        self.data = mujoco.MjData(self.model)
        self._check_model_cameras()
        self.robot.bind(self.model)
        self.perturber.bind(self.model, self.robot)
        self.substeps = round(1.0 / (self.robot.control_hz * PHYSICS_TIMESTEP))
        self.metadata = {**self.metadata, "render_fps": self.robot.control_hz}

        low, high = self.robot.action_bounds()
        self.action_space = spaces.Box(low, high, dtype=np.float32)
        self.observation_space = self._observation_space(self.robot.action_dim)
        self.description = describe_task(self.task, self.cameras, (self.height, self.width))
        self.max_steps = self.description.max_steps
        self.steps = 0
        self.stages: dict[str, bool] = {}

    # -- gymnasium API -----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.perturber.before_reset(self.model)
        mujoco.mj_resetData(self.model, self.data)
        self.task.new_episode()
        self.robot.set_state(self.data, self.robot.home)
        self.task.reset(self.model, self.data, self.np_random)
        self.perturber.after_reset(self.model, self.data, 0 if seed is None else seed)
        mujoco.mj_forward(self.model, self.data)
        self.steps = 0
        self.stages = self.task.evaluate(self.model, self.data)
        return self.observe(), self._info()

    def hold_action(self) -> np.ndarray:
        """The action that keeps the robot where it is (real-time mode holds it while the
        first policy call of an episode runs)."""
        return self.robot.state(self.data).astype(np.float32)

    def advance(self, action) -> tuple[float, bool, bool, dict]:
        """`step` without building the observation: the rollout loop uses it for the actions
        of a chunk whose observations no policy will read, so those frames are never
        rendered."""
        self.robot.apply_action(self.data, np.asarray(action, dtype=np.float64))
        self.task.before_physics(self.model, self.data)
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        self.steps += 1
        before = self.points
        self.stages = self.task.evaluate(self.model, self.data)
        terminated = self.points >= self.task.max_points and not self.diverged
        truncated = (self.steps >= self.max_steps or self.diverged) and not terminated
        return self.points - before, bool(terminated), bool(truncated), self._info()

    # -- helpers -----------------------------------------------------------------------
    @property
    def diverged(self) -> bool:
        """Whether MuJoCo has reset this episode's simulation after a state went bad (the
        counters are cleared by `reset`)."""
        return any(self.data.warning[w].number > 0 for w in DIVERGENCE_WARNINGS)

    @property
    def points(self) -> float:
        return float(sum(s.points for s in self.task.stages if self.stages.get(s.name)))

    def observe(self) -> dict:
        """The observation of the current state (what `step` returns after advancing)."""
        obs = {
            "images": self._render(self.cameras),
            "state": self.robot.state(self.data),
            "prompt": self.task.instruction,
        }
        return self.perturber.observe(obs)

    def _info(self) -> dict:
        return {
            "stages": dict(self.stages),
            "stage_points": {s.name: (s.points if self.stages.get(s.name) else 0.0) for s in self.task.stages},
            "points": self.points,
            "max_points": self.task.max_points,
            "is_success": self.points >= self.task.max_points,
            "sim_seconds": float(self.data.time),
            "sim_diverged": self.diverged,
        }

