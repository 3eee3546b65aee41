"""Franka Emika Panda, built here from its published kinematics with primitive geoms.

Kinematics follow Franka's modified (Craig) Denavit-Hartenberg table; each link body is
placed at RotX(alpha_{i-1}) · TransX(a_{i-1}) · TransZ(d_i) from its parent and turns about
its own z axis. Masses are the published link masses (rounded); geoms are capsules and boxes,
which render far faster on a CPU than the manufacturer's meshes.

Arm geoms collide with the world but not with each other (contype 2 / conaffinity 1), so
self-contact of overlapping primitives can never jam the arm; world geoms use contype 1 and
conaffinity 3.
"""

from __future__ import annotations

import math
import mujoco
import numpy as np

from pi0bench.envs.arm_mjcf import ArmNames, arm_document, position_actuators
from pi0bench.envs.scene import fmt

# (a_{i-1}, d_i, alpha_{i-1}) in metres / radians, joints 1..7 then the flange.
DH = (
    (0.0, 0.333, 0.0),
    (0.0, 0.0, -math.pi / 2),
    (0.0, 0.316, math.pi / 2),
    (0.0825, 0.0, math.pi / 2),
    (-0.0825, 0.384, -math.pi / 2),
    (0.0, 0.0, math.pi / 2),
    (0.088, 0.0, math.pi / 2),
)
FLANGE_D = 0.107
TCP_FROM_FLANGE = 0.1034
JOINT_LIMITS = np.array([
    (-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, -0.0698),
    (-2.8973, 2.8973), (-0.0175, 3.7525), (-2.8973, 2.8973),
])
LINK_MASSES = (4.97, 0.646, 3.228, 3.587, 1.225, 1.666, 0.735)
TORQUE_LIMITS = (87, 87, 87, 87, 12, 12, 12)
POSITION_GAINS = (4500, 4500, 3500, 3500, 2000, 2000, 2000)
FINGER_STROKE = 0.04  # metres per finger
GRIPPER_FORCE = 70.0  # newtons, the Panda hand's continuous grasp force
HOME = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])

ARM_GEOM = 'contype="2" conaffinity="1" group="1" rgba="0.92 0.92 0.95 1"'
DARK_GEOM = 'contype="2" conaffinity="1" group="1" rgba="0.25 0.25 0.28 1"'


JOINT_NAMES = tuple(f"joint{i}" for i in range(1, 8))
ACTUATOR_NAMES = tuple(f"act{i}" for i in range(1, 8))


def names(prefix: str) -> ArmNames:
    return ArmNames(prefix, JOINT_NAMES, ACTUATOR_NAMES)


def _link_body(i: int, inner: str) -> str:
    a, d, alpha = DH[i]
    pos = (a, -d * math.sin(alpha), d * math.cos(alpha))
    quat = (math.cos(alpha / 2), math.sin(alpha / 2), 0.0, 0.0)
    lo, hi = JOINT_LIMITS[i]
    return f"""
<body name="link{i + 1}" pos="{fmt(pos)}" quat="{fmt(quat)}" gravcomp="1">
  <joint name="joint{i + 1}" axis="0 0 1" range="{lo} {hi}" damping="{10 if i < 4 else 3}" armature="0.1"/>
  {_LINK_GEOMS[i]}
  {inner}
</body>"""


# Geoms per link in the link's own frame: a capsule spanning to the next joint origin (the
# "next" offsets follow from the DH table) and a cylinder housing the joint itself.
_LINK_GEOMS = (
    f'<geom type="capsule" fromto="0 0 -0.19 0 0 -0.03" size="0.06" mass="{LINK_MASSES[0]}" {ARM_GEOM}/>',
    f'<geom type="capsule" fromto="0 0 0 0 -0.26 0" size="0.06" mass="{LINK_MASSES[1]}" {ARM_GEOM}/>'
    f'<geom type="cylinder" fromto="0 0 -0.06 0 0 0.06" size="0.06" density="0" {ARM_GEOM}/>',
    f'<geom type="capsule" fromto="0 0 -0.12 0 0 -0.02" size="0.055" mass="{LINK_MASSES[2]}" {ARM_GEOM}/>'
    f'<geom type="capsule" fromto="0.0825 0 -0.02 0.0825 0 0" size="0.05" density="0" {ARM_GEOM}/>',
    f'<geom type="capsule" fromto="0 0 0 -0.0825 0.10 0" size="0.055" mass="{LINK_MASSES[3]}" {ARM_GEOM}/>'
    f'<geom type="cylinder" fromto="0 0 -0.055 0 0 0.055" size="0.055" density="0" {DARK_GEOM}/>',
    f'<geom type="capsule" fromto="0 0 -0.30 0 0 -0.04" size="0.045" mass="{LINK_MASSES[4]}" {ARM_GEOM}/>',
    f'<geom type="capsule" fromto="0 0 -0.03 0.088 0 0" size="0.045" mass="{LINK_MASSES[5]}" {ARM_GEOM}/>'
    f'<geom type="cylinder" fromto="0 0 -0.05 0 0 0.05" size="0.05" density="0" {DARK_GEOM}/>',
    f'<geom type="cylinder" fromto="0 0 0.0 0 0 0.08" size="0.045" mass="{LINK_MASSES[6]}" {DARK_GEOM}/>',
)


def _hand() -> str:
    """Hand mounted on the flange, turned -45 degrees about z as on the real robot."""
    tcp = TCP_FROM_FLANGE
    half_turn = -math.pi / 8
    quat = (math.cos(half_turn), 0.0, 0.0, math.sin(half_turn))
    pad = 'type="box" size="0.009 0.004 0.02" friction="1.5 0.05 0.001" condim="4" ' \
          'solref="0.004 1" solimp="0.95 0.99 0.0005" rgba="0.2 0.2 0.2 1" contype="2" conaffinity="1" group="1"'
    finger = 'type="box" size="0.01 0.006 0.027" density="0" ' + DARK_GEOM
    return f"""
<body name="hand" pos="0 0 {FLANGE_D}" quat="{fmt(quat)}" gravcomp="1">
  <geom type="cylinder" fromto="0 0 0 0 0 0.012" size="0.04" mass="0.2" {DARK_GEOM}/>
  <geom type="box" pos="0 0 0.035" size="0.022 0.1 0.023" mass="0.53" {ARM_GEOM}/>
  <site name="tcp" pos="0 0 {tcp}" size="0.006" rgba="1 0 0 0.5" group="5"/>
  <camera name="wrist" pos="0.065 0 0.03" xyaxes="0 1 0 0.97 0 0.26" fovy="75"/>
  <body name="finger_left" pos="0 0 0.0584" gravcomp="1">
    <joint name="finger_left" type="slide" axis="0 1 0" range="0 {FINGER_STROKE}" damping="5" armature="0.1"/>
    <geom pos="0 0.012 0.027" mass="0.015" {finger}/>
    <geom name="pad_left" pos="0 0.0045 0.045" {pad}/>
  </body>
  <body name="finger_right" pos="0 0 0.0584" gravcomp="1">
    <joint name="finger_right" type="slide" axis="0 -1 0" range="0 {FINGER_STROKE}" damping="5" armature="0.1"/>
    <geom pos="0 -0.012 0.027" mass="0.015" {finger}/>
    <geom name="pad_right" pos="0 -0.0045 0.045" {pad}/>
  </body>
</body>"""


def franka_mjcf() -> str:
    """The whole robot as an MJCF document (base at the origin, facing +x)."""
    inner = _hand()
    inner = f'<body name="flange_mount" pos="0 0 0" gravcomp="1">{inner}</body>'
    for i in reversed(range(7)):
        inner = _link_body(i, inner)
    actuators = position_actuators(ACTUATOR_NAMES, JOINT_NAMES, POSITION_GAINS, TORQUE_LIMITS,
                                   JOINT_LIMITS, 10.0)
    base = f'<geom type="cylinder" fromto="0 0 0 0 0 0.14" size="0.09" {ARM_GEOM}/>{inner}'
    return arm_document("franka_panda", base, actuators, stroke=FINGER_STROKE,
                        force=GRIPPER_FORCE, full_force_gap=0.02, damping_divisor=20)


def franka_spec() -> mujoco.MjSpec:
    return mujoco.MjSpec.from_string(franka_mjcf())
