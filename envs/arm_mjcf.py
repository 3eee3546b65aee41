"""MJCF pieces every arm model here shares: joint-position actuators and the document around
a kinematic chain with a coupled two-finger gripper."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArmNames:
    """Names of one arm's elements after attachment (prefix applied). Every arm model here
    calls its fingers `finger_left`/`finger_right`, its gripper servo `gripper`, its tool
    centre point site `tcp` and its wrist camera `wrist`."""

    prefix: str
    joint_names: tuple[str, ...]
    actuator_names: tuple[str, ...]

    @property
    def joints(self) -> list[str]:
        return [self.prefix + j for j in self.joint_names]

    @property
    def fingers(self) -> list[str]:
        return [f"{self.prefix}finger_left", f"{self.prefix}finger_right"]

    @property
    def actuators(self) -> list[str]:
        return [self.prefix + a for a in self.actuator_names] + [f"{self.prefix}gripper"]

    @property
    def tcp_site(self) -> str:
        return f"{self.prefix}tcp"

    @property
    def wrist_camera(self) -> str:
        return f"{self.prefix}wrist"


def position_actuators(names: Sequence[str], joints: Sequence[str], gains: Sequence[float],
                       torques: Sequence[float], limits: np.ndarray, kv_ratio: float) -> str:
    """One position servo per joint: stiffness `kp`, damping kp / kv_ratio, torque-limited."""
    return "\n".join(
        f'<position name="{name}" joint="{joint}" kp="{kp}" kv="{kp / kv_ratio:.4g}" '
        f'forcerange="-{tau} {tau}" ctrlrange="{lo} {hi}"/>'
        for name, joint, kp, tau, (lo, hi) in zip(names, joints, gains, torques, limits)
    )


def arm_document(model: str, base: str, actuators: str, *, stroke: float, force: float,
                 full_force_gap: float, damping_divisor: float) -> str:
    """A whole arm: `base` is the root body's content (geoms and the chain), the fingers are
    joints `finger_left`/`finger_right` coupled by an equality, and one force-limited servo
    named `gripper` drives them over [0, stroke]. The servo reaches its `force` limit when the
    fingers are `full_force_gap` from their target (kp = force / gap), with kv = kp / divisor."""
    kp = force / full_force_gap
    kv = kp / damping_divisor
    return f"""
<mujoco model="{model}">
  <compiler angle="radian" autolimits="true"/>
  <worldbody>
    <body name="base" gravcomp="1">
      {base}
    </body>
  </worldbody>
  <equality>
    <joint joint1="finger_right" joint2="finger_left" solref="0.005 1"/>
  </equality>
  <actuator>
    {actuators}
    <position name="gripper" joint="finger_left" kp="{kp}" kv="{kv}"
              forcerange="-{force} {force}" ctrlrange="0 {stroke}"/>
  </actuator>
</mujoco>"""
