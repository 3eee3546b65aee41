"""Camera rendering on the CPU: one offscreen renderer per env, only the cameras asked for."""

from __future__ import annotations

import atexit
import weakref

import mujoco
import numpy as np

from pi0bench.errors import UserError


def model_cameras(model: mujoco.MjModel) -> list[str]:
    """The names of every camera in a compiled model."""
    return [model.camera(i).name for i in range(model.ncam)]


def camera_id(model: mujoco.MjModel, name: str) -> int:
    """A camera's id, failing with its name when the model has none of that name: MuJoCo
    would render its free camera instead (a distant view of the whole scene), silently."""
    found = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
    if found < 0:
        raise UserError(f"the model has no camera {name!r}; its cameras are "
                        f"{', '.join(model_cameras(model)) or '(none)'}")
    return found


def check_model_cameras(model: mujoco.MjModel, cameras: tuple[str, ...]) -> None:
    for name in cameras:
        camera_id(model, name)


# Renderers not yet closed. An env a user never closes (common with gymnasium.make) would
# otherwise free its GL context from a finaliser during interpreter shutdown, after MuJoCo's
# own exit hook has terminated the EGL display, and print EGL tracebacks. The hook below
# closes them first: it is registered after the first GL context exists, so after MuJoCo's
# (exit hooks run last-registered first).
_OPEN: weakref.WeakSet[CameraRenderer] = weakref.WeakSet()
_EXIT_HOOK: list[bool] = []


def _close_open_renderers() -> None:
    for renderer in list(_OPEN):
        renderer.close()


def _track(renderer: CameraRenderer) -> None:
    _OPEN.add(renderer)
    if not _EXIT_HOOK:
        atexit.register(_close_open_renderers)
        _EXIT_HOOK.append(True)


class CameraRenderer:
    """Renders named cameras at a fixed size. Create it inside the process that uses it."""

    def __init__(self, model: mujoco.MjModel, height: int, width: int,
                 option: mujoco.MjvOption | None = None):
        """`option`: what to show (e.g. which geom groups); MuJoCo's defaults when None."""
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        self._renderer: mujoco.Renderer | None = mujoco.Renderer(model, height=height, width=width)
        _track(self)
        self._camera_ids = {}
        self._model = model
        self._option = option

    def camera_id(self, name: str) -> int:
        if name not in self._camera_ids:
            self._camera_ids[name] = camera_id(self._model, name)
        return self._camera_ids[name]

    def render(self, data: mujoco.MjData, cameras: tuple[str, ...]) -> dict[str, np.ndarray]:
        frames = {}
        for name in cameras:
            self._renderer.update_scene(data, camera=self.camera_id(name), scene_option=self._option)
            frames[name] = self._renderer.render().copy()
        return frames

    def close(self) -> None:
        """Free the GL context now (idempotent)."""
        renderer, self._renderer = self._renderer, None
        _OPEN.discard(self)
        if renderer is not None:
            renderer.close()
