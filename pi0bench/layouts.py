"""Observation layouts on the wire, and their mapping onto the project's observation.

The project's observation is ``{"images": {camera: HxWx3 uint8}, "state": float32[D],
"prompt": str}``. openpi clients send one of two layouts:

- ALOHA: ``state`` (14: per arm 6 joints + gripper, left first), ``images`` {cam_high,
  cam_low, cam_left_wrist, cam_right_wrist} as CHW uint8, ``prompt``. The project's ALOHA
  robot uses the same camera names and state order, so only the image axes change.
- DROID (Franka): ``observation/exterior_image_1_left`` and ``observation/wrist_image_left``
  (HWC uint8), ``observation/joint_position`` (7), ``observation/gripper_position`` (1, DROID's
  convention: 0 open, 1 closed), ``prompt``. They become the Franka's ``base`` and ``wrist``
  cameras and the state [7 joints, opening = 1 - gripper_position].

``native`` is the project's own observation (HWC images), which reproduces an observation bit
for bit; a pi0bench server accepts all three, told apart by their keys.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LAYOUTS = ("native", "aloha", "droid")
DROID_CAMERAS = {"observation/exterior_image_1_left": "base", "observation/wrist_image_left": "wrist"}
DROID_JOINTS, DROID_GRIPPER = "observation/joint_position", "observation/gripper_position"


class LayoutError(ValueError):
    """An observation that does not fit the served robot."""


def default_layout(robot: str) -> str:
    """What an openpi server for this robot expects."""
    return {"aloha": "aloha", "franka": "droid"}.get(robot, "native")


def check_layout(layout: str, robot: str) -> None:
    if layout not in LAYOUTS:
        raise LayoutError(f"unknown layout {layout!r}; choose from: {', '.join(LAYOUTS)}")
    if layout != "native" and default_layout(robot) != layout:
        raise LayoutError(f"the {layout} layout is for the {'aloha' if layout == 'aloha' else 'franka'} "
                          f"robot, not {robot}; use layout=native or layout={default_layout(robot)}")


def to_wire(obs: dict, layout: str) -> dict:
    """The project's observation in `layout` (what a client sends)."""
    if layout == "native":
        return {"images": dict(obs["images"]), "state": obs["state"], "prompt": obs["prompt"]}
    if layout == "aloha":
        return {"images": {cam: np.ascontiguousarray(img.transpose(2, 0, 1)) for cam, img in obs["images"].items()},
                "state": obs["state"], "prompt": obs["prompt"]}
    state = np.asarray(obs["state"], np.float32)
    wire = {DROID_JOINTS: state[:7], DROID_GRIPPER: (1.0 - state[7:8]).astype(np.float32), "prompt": obs["prompt"]}
    for key, cam in DROID_CAMERAS.items():
        if cam in obs["images"]:
            wire[key] = obs["images"][cam]
    return wire


def _hwc(image: Any, name: str) -> np.ndarray:
    """An image as HxWx3 uint8, from HWC or CHW."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3:
        raise LayoutError(f"image {name!r} must be a 3-D uint8 array (got {array.dtype} {array.shape})")
    if array.shape[-1] == 3:
        return array
    if array.shape[0] == 3:
        return np.ascontiguousarray(array.transpose(1, 2, 0))
    raise LayoutError(f"image {name!r} has shape {array.shape}; expected HxWx3 or 3xHxW")


def from_wire(message: Any, *, robot: str, state_dim: int, cameras: tuple[str, ...],
              default_prompt: str) -> dict:
    """Any accepted layout -> the project's observation for a policy reading `cameras`."""
    if not isinstance(message, dict):
        raise LayoutError(f"an observation must be a map, got {type(message).__name__}")
    if DROID_JOINTS in message:
        joints = np.asarray(message[DROID_JOINTS], np.float32).reshape(-1)
        gripper = np.asarray(message.get(DROID_GRIPPER, [0.0]), np.float32).reshape(-1)
        state = np.concatenate([joints, 1.0 - gripper])
        images = {cam: message[key] for key, cam in DROID_CAMERAS.items() if key in message}
    elif "state" in message and isinstance(message.get("images"), dict):
        state, images = message["state"], message["images"]
    else:
        raise LayoutError("observation has neither 'state' + 'images' (ALOHA / native layout) nor "
                          f"{DROID_JOINTS!r} (DROID layout); keys: {sorted(map(str, message))}")
    try:
        state = np.asarray(state, np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise LayoutError("state is not a numeric vector") from None
    if state.shape != (state_dim,):
        raise LayoutError(f"state has {state.size} values; the served {robot} robot has {state_dim}")
    missing = [cam for cam in cameras if cam not in images]
    if missing:
        raise LayoutError(f"observation lacks image {missing[0]!r}; this policy reads {', '.join(cameras)}")
    prompt = message.get("prompt", default_prompt)
    if not isinstance(prompt, str):
        raise LayoutError(f"prompt must be a string, got {type(prompt).__name__}")
    return {"images": {cam: _hwc(images[cam], cam) for cam in cameras}, "state": state, "prompt": prompt}
