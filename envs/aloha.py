"""The ALOHA-style bimanual station: two ViperX-300 arms facing each other across a table.

Layout follows ALOHA: a 1.21 × 0.76 m table whose top is z = 0, arm bases 0.469 m either
side of the centre at y = −0.019, the left arm reaching along +x and the right along −x; the
operator side is −y. Cameras carry openpi's ALOHA names: `cam_high` (overhead, on the frame
above the operator side, looking down across the table), `cam_low` (worm's-eye, just above
the table edge), `cam_left_wrist` and `cam_right_wrist` (on the grippers).

A bimanual task writes its own objects into the `<worldbody>` of `station_mjcf(...)` and
calls `attach_arms`; nothing here knows about any task.
"""

from __future__ import annotations

import mujoco

from pi0bench.envs import viperx
from pi0bench.envs.scene import fmt, look_at, table_mjcf, visual_defaults

LEFT = viperx.names("left/")
RIGHT = viperx.names("right/")
ARMS = (LEFT, RIGHT)
BASE_X = 0.469
BASE_Y = -0.019
CAMERAS = ("cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist")
# openpi's ALOHA policies read these three; cam_low is rendered only when asked for.
DEFAULT_CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
CAM_HIGH = ((0.0, -0.30, 1.02), (0.0, 0.17, 0.0))  # position, point looked at
CAM_LOW = ((0.0, -0.38, 0.035), (0.0, 0.6, 0.09))


def station_mjcf(model_name: str, objects: str, option: str = "") -> str:
    """The station's scene with a task's bodies (`objects`, MJCF) on the table."""
    return f"""
<mujoco model="{model_name}">
  <compiler angle="radian" autolimits="true"/>
  {option}
  {visual_defaults()}
  <worldbody>
    {table_mjcf(half_x=0.605, half_y=0.38, centre_x=0.0)}
    <camera name="cam_high" pos="{fmt(CAM_HIGH[0])}" xyaxes="{look_at(*CAM_HIGH)}" fovy="58"/>
    <camera name="cam_low" pos="{fmt(CAM_LOW[0])}" xyaxes="{look_at(*CAM_LOW)}" fovy="58"/>
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

