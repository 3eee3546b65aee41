"""The ALOHA-style bimanual station: two ViperX-300 arms facing each other across a table.

Layout follows ALOHA: a 1.21 × 0.76 m table whose top is z = 0, arm bases 0.469 m either
side of the centre at y = −0.019, the left arm reaching along +x and the right along −x; the
operator side is −y. Cameras carry openpi's ALOHA names: `cam_high` (overhead, looking down
on the task's workspace), `cam_low` (worm's-eye, just above the operator's table edge), `cam_left_wrist` and `cam_right_wrist` (on the grippers).

A bimanual task writes its own objects into the `<worldbody>` of `station_mjcf(...)` and
calls `attach_arms`; nothing here knows about any task.
"""

from __future__ import annotations

import mujoco

from pi0bench.envs import viperx
from pi0bench.envs.scene import FixedCamera, table_mjcf, visual_defaults

LEFT = viperx.names("left/")
RIGHT = viperx.names("right/")
ARMS = (LEFT, RIGHT)
BASE_X = 0.469
BASE_Y = -0.019
CAMERAS = ("cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist")
# openpi's ALOHA policies read these three; cam_low is rendered only when asked for.
DEFAULT_CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")


# Framed so a task's workspace fills the image at the sizes policies learn from (64-128 px);
# tasks pass their own (towel_fold: straight down on the towel; paper_towel_replace: high and
# in front, so the rolls' heights show).
CAM_HIGH = FixedCamera((0.0, -0.02, 0.80), (0.0, 0.03, 0.0), 45.0)
CAM_LOW = FixedCamera((0.0, -0.40, 0.06), (0.0, 0.15, 0.08), 50.0)


def station_mjcf(model_name: str, objects: str, option: str = "",
                 cam_high: FixedCamera = CAM_HIGH, cam_low: FixedCamera = CAM_LOW) -> str:
    """The station's scene with a task's bodies (`objects`, MJCF) on the table, seen by its
    two fixed cameras."""
    return f"""
<mujoco model="{model_name}">
  <compiler angle="radian" autolimits="true"/>
  {option}
  {visual_defaults()}
  <worldbody>
    {table_mjcf(half_x=0.605, half_y=0.38, centre_x=0.0)}
    {cam_high.mjcf("cam_high")}
    {cam_low.mjcf("cam_low")}
    <frame name="left_mount" pos="{-BASE_X} {BASE_Y} 0"/>
    <frame name="right_mount" pos="{BASE_X} {BASE_Y} 0" quat="0 0 0 1"/>
    {objects}
  </worldbody>
</mujoco>"""


def attach_arms(spec: mujoco.MjSpec) -> None:
    """Attach both arms to the station's mounts and give the wrist cameras openpi's names."""
    for arm, side in zip(ARMS, ("left", "right")):
        spec.attach(viperx.viperx_spec(), frame=spec.frame(f"{side}_mount"), prefix=arm.prefix)
        spec.camera(arm.wrist_camera).name = f"cam_{side}_wrist"

