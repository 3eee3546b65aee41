"""What every env the rollout loop drives shares: the observation contract and its cameras.

Observation (the same for every policy, as in openpi/LeRobot):
``{"images": {camera: HxWx3 uint8}, "state": float32[D], "prompt": str}``. A subclass provides
`robot` (with `name`, `cameras`, `default_cameras`), `model`, `data`, `advance(action)`
and `observe()`; this base renders only the cameras asked for, with one renderer made on first
use, inside the process that uses it.
"""

from __future__ import annotations

import hashlib

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from pi0bench.envs.description import choose_cameras
from pi0bench.envs.render import CameraRenderer, check_model_cameras

PROMPT_CHARSET = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.'-!?")


class CameraEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}
    render_option: mujoco.MjvOption | None = None  # what the cameras show (MuJoCo's default: all)

    def _init_view(self, cameras: tuple[str, ...] | None, image_size: int | tuple[int, int],
                   render_mode: str | None) -> None:
        """Check and keep the cameras (the robot's defaults when None) and the image size."""
        self.cameras = choose_cameras(self.robot, cameras)
        self.height, self.width = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.render_mode = render_mode
        self._renderer: CameraRenderer | None = None

    def _check_model_cameras(self) -> None:
        """Every camera the robot declares must exist in the compiled model under that name,
        so no camera can ever render as MuJoCo's free camera."""
        check_model_cameras(self.model, tuple(self.robot.cameras))

    def _observation_space(self, state_dim: int) -> spaces.Dict:
        image = spaces.Box(0, 255, (self.height, self.width, 3), np.uint8)
        return spaces.Dict({
            "images": spaces.Dict({c: image for c in self.cameras}),
            "state": spaces.Box(-np.inf, np.inf, (state_dim,), np.float32),
            "prompt": spaces.Text(max_length=256, charset=PROMPT_CHARSET),
        })

    def step(self, action):
        reward, terminated, truncated, info = self.advance(action)
        return self.observe(), reward, terminated, truncated, info

    def render(self):
        if self.render_mode == "rgb_array":
            return self._render(self.cameras[:1])[self.cameras[0]]
        return None

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def state_sha(self) -> str:
        """A hash of the simulator's state (qpos, qvel and every flex vertex, e.g. the towel's):
        two episodes with the same hash ended in the same state, bit for bit."""
        digest = hashlib.sha256()
        arrays = [self.data.qpos, self.data.qvel]
        if self.model.nflex:
            arrays.append(self.data.flexvert_xpos)
        for array in arrays:
            digest.update(np.ascontiguousarray(array, np.float64).tobytes())
        return digest.hexdigest()

    @property
    def sim_seconds(self) -> float:
        return float(self.data.time)

    def _render(self, cameras: tuple[str, ...]) -> dict[str, np.ndarray]:
        if not cameras:
            return {}
        if self._renderer is None:
            self._renderer = CameraRenderer(self.model, self.height, self.width, self.render_option)
        return self._renderer.render(self.data, cameras)
