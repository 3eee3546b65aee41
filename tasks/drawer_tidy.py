"""drawer_tidy: a Franka arm puts three items into a drawer and closes it (π0 paper, App. E).

Scene (metres, world frame: robot base at the origin facing +x, table top at z = 0)
  Cabinet 0.26 deep × 0.32 wide × 0.16 tall; its drawer slides out towards the robot on a
  damped prismatic joint (travel 0.20) and has a mushroom knob (shaft + cap) on its front.
  Items: a red cube (4.5 cm), a green can (r 2.2 cm, 6 cm tall), a blue block (3 × 7 × 3.5 cm).

Initial state, from the episode seed
  Cabinet front centre x ∈ [0.50, 0.58], y ∈ [0.10, 0.20], facing the robot ± 10° yaw.
  Items x ∈ [0.35, 0.60], y ∈ [−0.40, −0.17], any yaw, at least 0.10 apart.
  Robot at the Panda's ready pose, gripper open, drawer closed.

Rubric (5 points, as in the paper)
  drawer_opened  the drawer was pulled out ≥ 0.12 m at some point (latched: it is a step
                 the paper scores even if the drawer is later closed).
  <item>_in_drawer (×3)  the item's centre lies inside the drawer's interior box, below the
                 drawer's side walls, it moves with the drawer (< 5 cm/s relative), and no
                 finger touches it — resting, not held.
  drawer_closed  drawer within 1.5 cm of fully closed with all three items inside.
Success = 5/5. Episode length 40 s (800 control steps at 20 Hz).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from pi0bench.envs import franka
from pi0bench.envs.robots import Robot, make_franka
from pi0bench.envs.scene import WORLD_CONTACT, FixedCamera, table_mjcf, visual_defaults
from pi0bench.policies.scripted import Waypoint, WaypointExpert
from pi0bench.tasks.base import Stage, Task

DRAWER_TRAVEL = 0.20
OPENED_AT = 0.12
CLOSED_WITHIN = 0.015
# Drawer interior in the drawer body's frame (x out of the front, origin at the cabinet's
# front-bottom-centre when closed).
INTERIOR_X = (-0.24, 0.0)
INTERIOR_HALF_Y = 0.135
INTERIOR_Z = (0.02, 0.11)
RESTING_SPEED = 0.05
PANDA = franka.names("panda/")
KNOB = np.array([0.045, 0.0, 0.09])  # grasp point on the knob shaft, drawer frame
# The exterior camera stands beyond the far side of the table, right of the cabinet, looking
# back at the robot over the items and the drawer, framed so that workspace fills the image.
BASE_CAMERA = FixedCamera((1.05, -0.55, 0.70), (0.40, -0.08, 0.05), 50.0)


@dataclass(frozen=True)
class Item:
    name: str
    geom: str  # MJCF geom attributes (type, size)
    half_height: float
    mass: float
    rgba: str
    symmetry: float  # rotation about z that maps the item onto itself (0: any rotation)


ITEMS = (
    Item("red_cube", 'type="box" size="0.0225 0.0225 0.0225"', 0.0225, 0.08, "0.85 0.15 0.12 1", math.pi / 2),
    Item("green_can", 'type="cylinder" size="0.022 0.03"', 0.03, 0.07, "0.2 0.7 0.25 1", 0.0),
    Item("blue_block", 'type="box" size="0.015 0.035 0.0175"', 0.0175, 0.06, "0.15 0.3 0.85 1", math.pi),
)


def _cabinet_mjcf() -> str:
    wood = f'rgba="0.93 0.9 0.84 1" {WORLD_CONTACT}'
    inner = f'rgba="0.8 0.74 0.66 1" {WORLD_CONTACT}'
    return f"""
    <body name="cabinet" pos="0.54 0.15 0" euler="0 0 3.14159">
      <geom type="box" pos="-0.13 0 0.005" size="0.13 0.16 0.005" {wood}/>
      <geom type="box" pos="-0.13 0 0.155" size="0.13 0.16 0.005" {wood}/>
      <geom type="box" pos="-0.13 0.155 0.08" size="0.13 0.005 0.07" {wood}/>
      <geom type="box" pos="-0.13 -0.155 0.08" size="0.13 0.005 0.07" {wood}/>
      <geom type="box" pos="-0.255 0 0.08" size="0.005 0.15 0.07" {wood}/>
      <body name="drawer">
        <joint name="drawer" type="slide" axis="1 0 0" range="0 {DRAWER_TRAVEL}" damping="8" frictionloss="0.5" armature="0.2"/>
        <geom name="drawer_bottom" type="box" pos="-0.122 0 0.017" size="0.118 0.143 0.005" mass="0.5" {inner}/>
        <geom name="drawer_front" type="box" pos="0.008 0 0.08" size="0.006 0.158 0.072" mass="0.3" {wood}/>
        <geom type="box" pos="-0.245 0 0.06" size="0.005 0.143 0.043" mass="0.1" {inner}/>
        <geom type="box" pos="-0.122 0.14 0.06" size="0.118 0.003 0.043" mass="0.1" {inner}/>
        <geom type="box" pos="-0.122 -0.14 0.06" size="0.118 0.003 0.043" mass="0.1" {inner}/>
        <geom name="knob_shaft" type="capsule" fromto="0.014 0 0.09 0.066 0 0.09" size="0.009" mass="0.02" rgba="0.3 0.3 0.32 1" {WORLD_CONTACT}/>
        <geom name="knob_cap" type="sphere" pos="0.075 0 0.09" size="0.017" mass="0.02" rgba="0.3 0.3 0.32 1" {WORLD_CONTACT}/>
      </body>
    </body>"""


def _items_mjcf() -> str:
    bodies = []
    for k, item in enumerate(ITEMS):
        bodies.append(f"""
    <body name="{item.name}" pos="0.4 {-0.15 - 0.1 * k} {item.half_height}">
      <freejoint name="{item.name}"/>
      <geom name="{item.name}" {item.geom} mass="{item.mass}" rgba="{item.rgba}"
            friction="1.2 0.02 0.0005" condim="4" solref="0.004 1" solimp="0.95 0.99 0.0005"
            {WORLD_CONTACT}/>
    </body>""")
    return "".join(bodies)


def scene_mjcf() -> str:
    return f"""
<mujoco model="drawer_tidy">
  <compiler angle="radian" autolimits="true"/>
  <option integrator="implicitfast" cone="elliptic" impratio="5"/>
  {visual_defaults()}
  <worldbody>
    {table_mjcf()}
    {BASE_CAMERA.mjcf("base")}
    <frame name="robot_mount" pos="0 0 0"/>
    {_cabinet_mjcf()}
    {_items_mjcf()}
  </worldbody>
</mujoco>"""


class DrawerTidy(Task):
    name = "drawer_tidy"
    instruction = "put the items in the drawer and close it"
    episode_seconds = 40.0
    stages = (
        Stage("drawer_opened"),
        *(Stage(f"{item.name}_in_drawer") for item in ITEMS),
        Stage("drawer_closed"),
    )
    # right of the items, and beyond the cabinet, both in the base camera's view
    clutter_regions = ((0.66, 0.80, -0.32, -0.18), (-0.05, 0.20, 0.40, 0.65))

    def __init__(self) -> None:
        self._opened = False
        self._ids: dict | None = None

    def make_robot(self) -> Robot:
        return make_franka(PANDA.prefix)

    def build_spec(self) -> mujoco.MjSpec:
        spec = mujoco.MjSpec.from_string(scene_mjcf())
        spec.attach(franka.franka_spec(), frame=spec.frame("robot_mount"), prefix=PANDA.prefix)
        spec.camera(PANDA.wrist_camera).name = "wrist"  # the robot's camera list names it so
        return spec

    def new_episode(self) -> None:
        self._opened = False

    def reset(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator) -> None:
        cabinet = model.body("cabinet")
        model.body_pos[cabinet.id] = (self.uniform(rng, 0.50, 0.58), self.uniform(rng, 0.10, 0.20), 0.0)
        yaw = math.pi + self.uniform(rng, -math.radians(10), math.radians(10))
        model.body_quat[cabinet.id] = (math.cos(yaw / 2), 0, 0, math.sin(yaw / 2))
        placed: list[np.ndarray] = []
        for item in ITEMS:
            while True:
                xy = np.array([self.uniform(rng, 0.35, 0.60), self.uniform(rng, -0.40, -0.17)])
                if all(np.linalg.norm(xy - other) >= 0.10 for other in placed):
                    break
            placed.append(xy)
            item_yaw = self.uniform(rng, -math.pi, math.pi)
            adr = model.joint(item.name).qposadr[0]
            data.qpos[adr:adr + 7] = (*xy, item.half_height + 0.001,
                                      math.cos(item_yaw / 2), 0, 0, math.sin(item_yaw / 2))

    # -- rubric ------------------------------------------------------------------------
    def _bind(self, model: mujoco.MjModel) -> dict:
        if self._ids is None or self._ids["model"] is not model:
            self._ids = {
                "model": model,
                "drawer_qpos": model.joint("drawer").qposadr[0],
                "drawer_body": model.body("drawer").id,
                "items": [model.body(i.name).id for i in ITEMS],
                "item_geoms": [model.geom(i.name).id for i in ITEMS],
                "fingers": {model.body(n).id for n in PANDA.fingers},
            }
        return self._ids

    def drawer_opening(self, model: mujoco.MjModel, data: mujoco.MjData) -> float:
        return float(data.qpos[self._bind(model)["drawer_qpos"]])

    def items_in_drawer(self, model: mujoco.MjModel, data: mujoco.MjData) -> list[bool]:
        ids = self._bind(model)
        drawer = ids["drawer_body"]
        frame_pos, frame_rot = data.xpos[drawer], data.xmat[drawer].reshape(3, 3)
        drawer_vel = _body_linear_velocity(model, data, drawer)
        held = _bodies_touching(model, data, ids["fingers"])
        inside = []
        for body in ids["items"]:
            local = frame_rot.T @ (data.xpos[body] - frame_pos)
            within = (INTERIOR_X[0] <= local[0] <= INTERIOR_X[1]
                      and abs(local[1]) <= INTERIOR_HALF_Y
                      and INTERIOR_Z[0] <= local[2] <= INTERIOR_Z[1])
            speed = np.linalg.norm(_body_linear_velocity(model, data, body) - drawer_vel)
            inside.append(bool(within and speed < RESTING_SPEED and body not in held))
        return inside

    def evaluate(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, bool]:
        opening = self.drawer_opening(model, data)
        self._opened = self._opened or opening >= OPENED_AT
        inside = self.items_in_drawer(model, data)
        stages = {"drawer_opened": self._opened}
        stages.update({f"{item.name}_in_drawer": ok for item, ok in zip(ITEMS, inside)})
        stages["drawer_closed"] = self._opened and all(inside) and opening <= CLOSED_WITHIN
        return stages

    def expert(self, env):
        return WaypointExpert(env, lambda: self._plan(env))

    # -- scripted expert ---------------------------------------------------------------
    def _plan(self, env):
        """Open the drawer by its knob, drop each item into its own slot, push it shut."""
        model, data = env.model, env.data
        ids = self._bind(model)
        open_g, shut = 1.0, 0.0
        transit = 0.26

        def drawer_frame():
            body = ids["drawer_body"]
            return data.xpos[body].copy(), data.xmat[body].reshape(3, 3).copy()

        def knob_waypoints(push: float):
            pos, rot = drawer_frame()
            knob = pos + rot @ KNOB
            along = rot[:, 0]  # out of the drawer front
            yaw = float(np.arctan2(rot[1, 1], rot[0, 1]))  # fingers close across the knob
            yield Waypoint(knob + [0, 0, 0.12], yaw, open_g, 1.4)
            yield Waypoint(knob, yaw, open_g, 0.9)
            yield Waypoint(knob, yaw, shut, 0.5)
            yield Waypoint(knob + push * along, yaw, shut, 1.8)
            yield Waypoint(knob + push * along, yaw, open_g, 0.4)
            yield Waypoint(knob + push * along + [0, 0, 0.12], yaw, open_g, 0.6)

        yield from knob_waypoints(DRAWER_TRAVEL - 0.01)
        for slot, (item, body) in zip((-0.085, 0.0, 0.085), zip(ITEMS, ids["items"])):
            centre = data.xpos[body].copy()
            rot = data.xmat[body].reshape(3, 3)
            yaw = _grasp_yaw(float(np.arctan2(rot[1, 0], rot[0, 0])), item.symmetry)
            grasp_z = max(centre[2], 0.022)
            above = np.array([centre[0], centre[1], transit])
            yield Waypoint(above, yaw, open_g, 1.3)
            yield Waypoint(np.array([centre[0], centre[1], grasp_z]), yaw, open_g, 1.0)
            yield Waypoint(np.array([centre[0], centre[1], grasp_z]), yaw, shut, 0.5)
            yield Waypoint(above, yaw, shut, 0.8)
            pos, frame = drawer_frame()
            drop = pos + frame @ np.array([-0.09, slot, 0.0])
            drawer_yaw = float(np.arctan2(frame[1, 1], frame[0, 1]))
            release_z = INTERIOR_Z[0] + 0.012 + (grasp_z - centre[2]) + item.half_height
            yield Waypoint(np.array([drop[0], drop[1], transit]), drawer_yaw, shut, 1.4)
            yield Waypoint(np.array([drop[0], drop[1], release_z]), drawer_yaw, shut, 0.8)
            yield Waypoint(np.array([drop[0], drop[1], release_z]), drawer_yaw, open_g, 0.4)
            yield Waypoint(np.array([drop[0], drop[1], transit]), drawer_yaw, open_g, 0.6)
        yield from knob_waypoints(-(DRAWER_TRAVEL + 0.02))


def _grasp_yaw(item_yaw: float, symmetry: float) -> float:
    """Fingers close along the item's local x axis (the block's short side); where the item's
    symmetry allows, turn that axis towards world x so the hand's long side runs along x,
    away from the cabinet."""
    if symmetry == 0.0:
        return 0.0
    turns = np.round(-item_yaw / symmetry)
    return float(item_yaw + turns * symmetry)


def _body_linear_velocity(model: mujoco.MjModel, data: mujoco.MjData, body: int) -> np.ndarray:
    vel = np.zeros(6)
    mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_BODY, body, vel, 0)
    return vel[3:]


def _bodies_touching(model: mujoco.MjModel, data: mujoco.MjData, bodies: set[int]) -> set[int]:
    """Bodies in contact with any of `bodies`."""
    b1 = model.geom_bodyid[data.contact.geom1]
    b2 = model.geom_bodyid[data.contact.geom2]
    ours = np.isin(b1, list(bodies))
    theirs = np.isin(b2, list(bodies))
    return set(b2[ours].tolist()) | set(b1[theirs].tolist())
