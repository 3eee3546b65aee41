"""Interbotix ViperX-300 6DOF arm (the ALOHA arm), built here from its published kinematics.

Joint origins, axes and limits are Interbotix's vx300s description: waist (z) 0.079 m above
the base, shoulder (y) 0.048 m above that, elbow (y) 0.0596 m forward and 0.300 m up, forearm
roll (x) 0.200 m along the forearm, wrist angle (y) 0.100 m further, wrist rotate (x) 0.0697 m
further. With every joint at zero the upper arm points up and the forearm forward (+x).
Link masses are the published ones (rounded); geoms are capsules and boxes.

The gripper is a parallel jaw on a rail: each finger slides 0-37 mm from the centre line
(the real robot's software limits), so the jaw opens to 74 mm. The `tcp` site sits between
the pads; its z axis is the approach direction and its y axis the closing direction, the
same convention as the Panda's hand, so experts and tasks treat both robots alike.

Arm geoms use contype 2 / conaffinity 1: they touch the world but not each other, so the
overlapping primitives of one arm, or two arms passing close, can never lock up.
"""

from __future__ import annotations

import math
import mujoco
import numpy as np

from pi0bench.envs.arm_mjcf import ArmNames, arm_document, position_actuators
from pi0bench.envs.scene import fmt

JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
JOINT_LIMITS = np.array([
    (-math.pi, math.pi), (-1.85005, 1.25664), (-1.76278, 1.6057),
    (-math.pi, math.pi), (-1.8675, 2.23402), (-math.pi, math.pi),
])
# Dynamixel stall torques of the joints (N·m) and position gains that track IK paths closely.
TORQUE_LIMITS = (35, 144, 59, 22, 35, 35)
POSITION_GAINS = (300, 900, 600, 120, 120, 60)
LINK_MASSES = (0.97, 0.80, 0.79, 0.32, 0.41, 0.12, 0.67)  # base ... gripper (incl. its base)
FINGER_STROKE = 0.037  # metres from the centre line, per finger
FINGER_MASS = 0.086
GRIPPER_FORCE = 20.0
TCP_FROM_WRIST_ROTATE = 0.125
PAD_HALF_LENGTH = 0.015  # along the approach; the tcp is the pads' centre
PAD_HALF_WIDTH = 0.015  # across the jaw
# Forearm level and the gripper pitched 40 degrees down: the wrist cameras see the table.
HOME = np.array([0.0, -0.96, 1.16, 0.0, 0.5, 0.0])

ARM_GEOM = 'contype="2" conaffinity="1" group="1" rgba="0.13 0.13 0.14 1"'
JOINT_GEOM = 'contype="2" conaffinity="1" group="1" rgba="0.3 0.3 0.33 1"'


def names(prefix: str) -> ArmNames:
    return ArmNames(prefix, JOINTS, JOINTS)


def _finger(side: str, sign: int) -> str:
    pad = (f'type="box" size="{PAD_HALF_LENGTH} 0.004 {PAD_HALF_WIDTH}" friction="1.5 0.05 0.001" condim="4" '
           'solref="0.004 1" solimp="0.95 0.99 0.0005" rgba="0.85 0.85 0.85 1" '
           'contype="2" conaffinity="1" group="1"')
    return f"""
  <body name="finger_{side}" gravcomp="1">
    <joint name="finger_{side}" type="slide" axis="0 {sign} 0" range="0 {FINGER_STROKE + 0.004}"
           damping="20" armature="0.05"/>
    <geom type="box" pos="0.085 {sign * 0.014} 0" size="0.012 0.010 0.016" mass="{FINGER_MASS}" {ARM_GEOM}/>
    <geom name="pad_{side}" pos="{TCP_FROM_WRIST_ROTATE} {sign * 0.004} 0" {pad}/>
  </body>"""


def _gripper() -> str:
    """Gripper on the wrist-rotate joint: x along the approach, fingers sliding along y.

    The tcp site is turned so its z is the gripper's x (approach) and its y the gripper's y.
    The wrist camera looks along the approach from above the rail, as ALOHA's D405 does.
    """
    tcp_quat = (math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0)
    return f"""
<body name="gripper" pos="0.069744 0 0" gravcomp="1">
  <joint name="wrist_rotate" axis="1 0 0" range="{fmt(JOINT_LIMITS[5])}" damping="1" armature="0.01"/>
  <geom type="cylinder" fromto="0 0 0 0.03 0 0" size="0.022" mass="{LINK_MASSES[6] * 0.4}" {JOINT_GEOM}/>
  <geom type="box" pos="0.05 0 0" size="0.02 0.05 0.018" mass="{LINK_MASSES[6] * 0.6}" {ARM_GEOM}/>
  <site name="tcp" pos="{TCP_FROM_WRIST_ROTATE} 0 0" quat="{fmt(tcp_quat)}" size="0.005" rgba="1 0 0 0.5" group="5"/>
  <camera name="wrist" pos="0.04 0 0.07" xyaxes="0 -1 0 0.45 0 0.89" fovy="70"/>
  {_finger("left", 1)}
  {_finger("right", -1)}
</body>"""


def _link(body: str, joint: str, pos, axis: str, limits, damping: float, geoms: str,
          inner: str) -> str:
    return f"""
<body name="{body}" pos="{fmt(pos)}" gravcomp="1">
  <joint name="{joint}" axis="{axis}" range="{fmt(limits)}" damping="{damping}" armature="0.05"/>
  {geoms}
  {inner}
</body>"""


def viperx_mjcf() -> str:
    """One arm as an MJCF document: base at the origin, the arm reaching along +x."""
    m = LINK_MASSES
    inner = _gripper()
    inner = _link("wrist_link", "wrist_angle", (0.1, 0, 0), "0 1 0", JOINT_LIMITS[4], 2.0,
                  f'<geom type="capsule" fromto="0 0 0 0.05 0 0" size="0.022" mass="{m[5]}" {JOINT_GEOM}/>',
                  inner)
    inner = _link("lower_forearm_link", "forearm_roll", (0.2, 0, 0), "1 0 0", JOINT_LIMITS[3], 3.0,
                  f'<geom type="capsule" fromto="0 0 0 0.085 0 0" size="0.026" mass="{m[4]}" {ARM_GEOM}/>',
                  inner)
    inner = _link("upper_forearm_link", "elbow", (0.05955, 0, 0.3), "0 1 0", JOINT_LIMITS[2], 8.0,
                  f'<geom type="capsule" fromto="0 0 0 0.19 0 0" size="0.028" mass="{m[3]}" {ARM_GEOM}/>',
                  inner)
    inner = _link("upper_arm_link", "shoulder", (0, 0, 0.04805), "0 1 0", JOINT_LIMITS[1], 15.0,
                  f'<geom type="capsule" fromto="0 0 0 0.05955 0 0.3" size="0.03" mass="{m[2]}" {ARM_GEOM}/>'
                  f'<geom type="cylinder" fromto="0 -0.035 0 0 0.035 0" size="0.035" density="0" {JOINT_GEOM}/>',
                  inner)
    inner = _link("shoulder_link", "waist", (0, 0, 0.079), "0 0 1", JOINT_LIMITS[0], 5.0,
                  f'<geom type="cylinder" fromto="0 0 0 0 0 0.03" size="0.045" mass="{m[1]}" {JOINT_GEOM}/>',
                  inner)
    actuators = position_actuators(JOINTS, JOINTS, POSITION_GAINS, TORQUE_LIMITS, JOINT_LIMITS, 12.0)
    base = f'<geom type="box" pos="-0.02 0 0.02" size="0.06 0.06 0.02" mass="{m[0]}" {ARM_GEOM}/>{inner}'
    return arm_document("viperx_300_6dof", base, actuators, stroke=FINGER_STROKE,
                        force=GRIPPER_FORCE, full_force_gap=0.01, damping_divisor=25)


def viperx_spec() -> mujoco.MjSpec:
    return mujoco.MjSpec.from_string(viperx_mjcf())
