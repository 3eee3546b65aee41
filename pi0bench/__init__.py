"""pi0bench: the π0 paper's manipulation evaluations re-created in MuJoCo, one rollout loop
for every policy, honest statistics."""

import os
import sys

# Offscreen rendering without a display: EGL (Mesa falls back to the CPU). Set before mujoco
# or dm_control is imported anywhere; an explicit MUJOCO_GL from the user wins.
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"

import pi0bench.envs  # noqa: E402,F401  (registers the gymnasium ids)
