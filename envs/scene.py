"""Pieces every scene shares: a table at z = 0, lights without shadows, camera placement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# World geoms collide with everything; robot geoms use contype 2 / conaffinity 1.
WORLD_CONTACT = 'contype="1" conaffinity="3"'


def fmt(values) -> str:
    """Numbers as an MJCF attribute value."""
    return " ".join(f"{v:.6g}" for v in values)


def look_at(position, target, up=(0.0, 0.0, 1.0)) -> str:
    """MJCF `xyaxes` for a camera at `position` looking at `target` (MuJoCo cameras look
    down their -z axis)."""
    forward = np.asarray(target, float) - np.asarray(position, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    return fmt((*right, *true_up))


@dataclass(frozen=True)
class FixedCamera:
    """A camera fixed in the world: where it is, the point it looks at, its vertical field of
    view in degrees."""

    position: tuple[float, float, float]
    target: tuple[float, float, float]
    fovy: float

    def mjcf(self, name: str) -> str:
        return (f'<camera name="{name}" pos="{fmt(self.position)}" '
                f'xyaxes="{look_at(self.position, self.target)}" fovy="{self.fovy:g}"/>')


def table_mjcf(half_x: float = 0.7, half_y: float = 0.8, centre_x: float = 0.35) -> str:
    """A table whose top is the plane z = 0, plus a floor and shadowless lights.

    Shadows dominate CPU render cost (SIM_NOTES: 200-250 vs ~1,000 frames/s at 128 px), so
    the lights cast none.
    """
    return f"""
    <light name="key" pos="0.3 -0.6 1.6" dir="0.1 0.4 -1" diffuse="0.7 0.7 0.7" castshadow="false"/>
    <light name="fill" pos="0.5 0.8 1.2" dir="0 -0.5 -1" diffuse="0.35 0.35 0.35" castshadow="false"/>
    <geom name="floor" type="plane" pos="0 0 -0.75" size="3 3 0.1" rgba="0.35 0.37 0.4 1" {WORLD_CONTACT}/>
    <geom name="table" type="box" pos="{centre_x} 0 -0.025" size="{half_x} {half_y} 0.025"
          rgba="0.62 0.5 0.38 1" friction="0.8 0.02 0.0001" {WORLD_CONTACT}/>
    """


def visual_defaults() -> str:
    """Render settings for fast CPU rendering: no multisampling, a small shadow map, and
    capsules/cylinders tessellated 16 × 8 instead of 28 × 16 (3 cameras of the towel scene
    at 128 px: 1.95 instead of 3.07 ms a frame)."""
    return """
  <visual>
    <quality offsamples="0" shadowsize="512" numslices="16" numstacks="8"/>
    <global offwidth="640" offheight="480"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.3 0.3 0.3" specular="0 0 0"/>
  </visual>"""
