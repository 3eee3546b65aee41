"""paper_towel_replace: take the old roll off its holder and put a new one on (π0 paper, App. E).

Scene (metres; table top z = 0, the ALOHA station of envs/aloha.py)
  Holder: a base disc (r 7 cm, 1.5 cm thick) with a vertical spindle (r 1.4 cm, 23.5 cm
  above the base). Rolls are tubes of 12 boxes (envs/shapes.py), 20 cm tall, with a 1.9 cm
  core hole, so the spindle passes through with 5 mm of clearance:
    old roll  nearly used up: outer r 2.4 cm, 40 g, on the spindle, resting on the base;
    new roll  full: outer r 3.1 cm, 110 g (≈ 0.3 g/cm³ of rolled paper), lying on its side.
  The jaws open to 7.4 cm, so both rolls can be pinched across their diameter.

Initial state, from the episode seed
  Holder centre x ∈ [0.02, 0.10], y ∈ [0.04, 0.12] (it is round: its yaw means nothing).
  New roll centre x ∈ [−0.22, −0.12], y ∈ [−0.06, 0.08], axis yaw ∈ [0°, 180°), lying on
  the table. Old roll on the spindle at any yaw. Both arms at home, jaws open.

Rubric (4 points, as in the paper)
  grasp_old   (latched) for 0.3 s on end, both pads of one jaw touch the old roll, it is
              ≥ 1 cm above where it started, and it touches nothing but the robot — not the
              table, the holder or the other roll: held off its support. (Without the 0.3 s,
              arms flailing at random earned it in 2 of 10 episodes by batting the roll
              between the pads; without the contact rule, pinching the new roll after
              standing it on end earned it, its centre being ~7 cm higher upright.)
  remove_old  after grasp_old, the old roll is off the holder: the spindle is out of its
              outer cylinder (centres ≥ outer r + spindle r + 5 mm apart horizontally, or
              its lowest point above the spindle tip), it touches neither spindle nor base,
              it is at rest (< 1 cm/s, < 0.2 rad/s) and no pad touches it. Lifted but still
              around the spindle earns nothing, and so does a roll knocked off without being
              grasped.
  grasp_new   (latched) as grasp_old, for the new roll.
  place_new   after grasp_new, the new roll is on the spindle: its axis within 3° of vertical,
              the centre of its bottom within clearance + 2 mm (7 mm) of the spindle axis
              and −3/+5 mm of the base top, at rest, no pad touching it. A roll jammed at an
              angle on the tip, or standing on the table beside the holder, earns nothing.
  Thresholds follow SIM_NOTES, whose probes these predicates separated every time.
Success = 4/4. Episode length 30 s (1500 control steps at 50 Hz).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from pi0bench.envs import aloha
from pi0bench.envs.robots import Robot, make_aloha
from pi0bench.envs.scene import WORLD_CONTACT, FixedCamera
from pi0bench.envs.shapes import hollow_cylinder_geoms
from pi0bench.policies.scripted import Waypoint, WaypointExpert
from pi0bench.tasks.base import Stage, Task

BASE_RADIUS, BASE_HEIGHT = 0.07, 0.015
SPINDLE_RADIUS, SPINDLE_HEIGHT = 0.014, 0.235
SPINDLE_TOP = BASE_HEIGHT + SPINDLE_HEIGHT
ROLL_HEIGHT = 0.20
CORE_RADIUS = 0.019
CLEARANCE = CORE_RADIUS - SPINDLE_RADIUS
LIFTED = 0.01
GRASP_SECONDS = 0.3
REST_SPEED, REST_SPIN = 0.01, 0.2
PLACED_TILT = math.radians(3.0)
PLACED_OFFSET = CLEARANCE + 0.002
PLACED_HEIGHT = (-0.003, 0.005)
OLD_ROLL_DROP = np.array([0.15, -0.22])  # where the expert sets the old roll down
# High in front of the holder, looking down at ~50°: the holder, both rolls and where the old
# one is set down fill the frame, and the rolls' heights (on the spindle or lifted) show.
CAM_HIGH = FixedCamera((0.0, -0.34, 0.80), (-0.02, -0.06, 0.06), 48.0)


@dataclass(frozen=True)
class Roll:
    name: str
    outer: float
    mass: float
    rgba: str


OLD = Roll("old_roll", 0.024, 0.04, "0.93 0.91 0.86 1")
NEW = Roll("new_roll", 0.031, 0.11, "0.98 0.98 0.98 1")


def _roll_body(roll: Roll, pos) -> str:
    wall = hollow_cylinder_geoms(roll.name, CORE_RADIUS, roll.outer, ROLL_HEIGHT, roll.mass,
                                 roll.rgba, extra='friction="1 0.01 0.001" condim="4"')
    return f"""
    <body name="{roll.name}" pos="{pos}">
      <freejoint name="{roll.name}"/>
      {wall}
    </body>"""


def _objects() -> str:
    metal = f'rgba="0.55 0.56 0.6 1" {WORLD_CONTACT}'
    return f"""
    <body name="holder" pos="0.06 0.08 0">
      <geom name="holder_base" type="cylinder" pos="0 0 {BASE_HEIGHT / 2}" size="{BASE_RADIUS} {BASE_HEIGHT / 2}" {metal}/>
      <geom name="spindle" type="cylinder" pos="0 0 {BASE_HEIGHT + SPINDLE_HEIGHT / 2}" size="{SPINDLE_RADIUS} {SPINDLE_HEIGHT / 2}" {metal}/>
    </body>
    {_roll_body(OLD, f"0.06 0.08 {BASE_HEIGHT + ROLL_HEIGHT / 2}")}
    {_roll_body(NEW, f"-0.17 0.0 {NEW.outer}")}"""


class PaperTowelReplace(Task):
    name = "paper_towel_replace"
    instruction = "replace the paper towel roll"
    episode_seconds = 30.0
    stages = (Stage("grasp_old"), Stage("remove_old"), Stage("grasp_new"), Stage("place_new"))
    # the left corners and the far right of cam_high's view, away from the rolls and the holder
    clutter_regions = ((-0.40, -0.28, 0.22, 0.34), (-0.40, -0.28, -0.34, -0.22), (0.20, 0.30, 0.25, 0.36))

    def __init__(self) -> None:
        self.new_episode()
        self._start_z: dict[str, float] = {}
        self._ids: dict | None = None

    def make_robot(self) -> Robot:
        return make_aloha()

    def build_spec(self) -> mujoco.MjSpec:
        spec = mujoco.MjSpec.from_string(aloha.station_mjcf(
            self.name, _objects(), option='<option integrator="implicitfast" cone="elliptic" impratio="5"/>',
            cam_high=CAM_HIGH))
        aloha.attach_arms(spec)
        return spec

    def new_episode(self) -> None:
        self._latched = {"grasp_old": False, "grasp_new": False}
        self._held_since: dict[str, float | None] = {OLD.name: None, NEW.name: None}

    def _bind(self, model: mujoco.MjModel) -> dict:
        if self._ids is None or self._ids["model"] is not model:
            self._ids = {
                "model": model,
                "holder": model.body("holder").id,
                "holder_geoms": {model.geom("holder_base").id, model.geom("spindle").id},
                "rolls": {r.name: model.body(r.name).id for r in (OLD, NEW)},
                "qpos": {r.name: model.joint(r.name).qposadr[0] for r in (OLD, NEW)},
                "pads": [(model.geom(f"{arm.prefix}pad_left").id, model.geom(f"{arm.prefix}pad_right").id)
                         for arm in aloha.ARMS],
                "bases": [model.body(f"{arm.prefix}base").id for arm in aloha.ARMS],
                "robot_roots": {model.body_rootid[model.body(f"{arm.prefix}base").id] for arm in aloha.ARMS},
            }
        return self._ids

    def reset(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator) -> None:
        ids = self._bind(model)
        holder = np.array([self.uniform(rng, 0.02, 0.10), self.uniform(rng, 0.04, 0.12), 0.0])
        model.body_pos[ids["holder"]] = holder
        old_yaw = self.uniform(rng, -math.pi, math.pi)
        self.set_roll(model, data, OLD, holder + [0, 0, BASE_HEIGHT + ROLL_HEIGHT / 2 + 0.0005],
                      _yaw_quat(old_yaw))
        new_xy = np.array([self.uniform(rng, -0.22, -0.12), self.uniform(rng, -0.06, 0.08)])
        axis_yaw = self.uniform(rng, 0.0, math.pi)
        self.set_roll(model, data, NEW, np.append(new_xy, NEW.outer + 0.0005), _lying_quat(axis_yaw))
        mujoco.mj_kinematics(model, data)
        self._start_z = {r.name: float(data.xpos[ids["rolls"][r.name]][2]) for r in (OLD, NEW)}

    def set_roll(self, model: mujoco.MjModel, data: mujoco.MjData, roll: Roll, pos, quat) -> None:
        """Put a roll at a pose, at rest (reset, and tests that build states)."""
        adr = self._bind(model)["qpos"][roll.name]
        data.qpos[adr:adr + 7] = (*pos, *quat)
        dof = model.jnt_dofadr[model.joint(roll.name).id]
        data.qvel[dof:dof + 6] = 0.0

    # -- rubric ------------------------------------------------------------------------
    def _touching(self, model: mujoco.MjModel, data: mujoco.MjData, roll: Roll) -> set[int]:
        """Geoms in contact with the roll."""
        body = self._bind(model)["rolls"][roll.name]
        contacts = data.contact[: data.ncon]
        g1, g2 = contacts.geom1, contacts.geom2
        b1, b2 = model.geom_bodyid[g1], model.geom_bodyid[g2]
        return set(g2[b1 == body].tolist()) | set(g1[b2 == body].tolist())

    def held(self, model: mujoco.MjModel, data: mujoco.MjData, roll: Roll) -> bool:
        touching = self._touching(model, data, roll)
        return any(left in touching and right in touching for left, right in self._bind(model)["pads"])

    def supported(self, model: mujoco.MjModel, data: mujoco.MjData, roll: Roll) -> bool:
        """Whether anything but the robot touches the roll (the table, the holder, the other
        roll): a roll pinched while it still stands or lies on something is not lifted."""
        robot = self._bind(model)["robot_roots"]
        return any(model.body_rootid[model.geom_bodyid[g]] not in robot
                   for g in self._touching(model, data, roll))

    def roll_frame(self, model: mujoco.MjModel, data: mujoco.MjData, roll: Roll) -> tuple[np.ndarray, np.ndarray]:
        """Centre and unit axis of a roll."""
        body = self._bind(model)["rolls"][roll.name]
        return data.xpos[body].copy(), data.xmat[body].reshape(3, 3)[:, 2].copy()

    def _at_rest(self, model: mujoco.MjModel, data: mujoco.MjData, roll: Roll) -> bool:
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_BODY,
                                 self._bind(model)["rolls"][roll.name], vel, 0)
        return float(np.linalg.norm(vel[3:])) < REST_SPEED and float(np.linalg.norm(vel[:3])) < REST_SPIN

    def removed(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        ids = self._bind(model)
        centre, axis = self.roll_frame(model, data, OLD)
        spindle = data.xpos[ids["holder"]]
        lowest = centre[2] - abs(axis[2]) * ROLL_HEIGHT / 2 - math.hypot(axis[0], axis[1]) * OLD.outer
        apart = np.linalg.norm(centre[:2] - spindle[:2]) >= OLD.outer + SPINDLE_RADIUS + 0.005
        clear_of_spindle = apart or lowest > spindle[2] + SPINDLE_TOP
        touching = self._touching(model, data, OLD)
        return (clear_of_spindle and not (touching & ids["holder_geoms"])
                and self._at_rest(model, data, OLD) and not self.held(model, data, OLD))

    def placed(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        ids = self._bind(model)
        centre, axis = self.roll_frame(model, data, NEW)
        axis = axis if axis[2] >= 0 else -axis
        bottom = centre - axis * ROLL_HEIGHT / 2
        spindle = data.xpos[ids["holder"]]
        upright = math.acos(min(1.0, axis[2])) < PLACED_TILT
        centred = np.linalg.norm(bottom[:2] - spindle[:2]) <= PLACED_OFFSET
        seated = PLACED_HEIGHT[0] <= bottom[2] - (spindle[2] + BASE_HEIGHT) <= PLACED_HEIGHT[1]
        return (upright and centred and seated and self._at_rest(model, data, NEW)
                and not self.held(model, data, NEW))

    def _grasped(self, model: mujoco.MjModel, data: mujoco.MjData, roll: Roll) -> bool:
        """Held off its support by one jaw, without a break, for GRASP_SECONDS."""
        lifted = self.roll_frame(model, data, roll)[0][2] >= self._start_z[roll.name] + LIFTED
        if not (lifted and self.held(model, data, roll) and not self.supported(model, data, roll)):
            self._held_since[roll.name] = None
            return False
        if self._held_since[roll.name] is None:
            self._held_since[roll.name] = float(data.time)
        return float(data.time) - self._held_since[roll.name] >= GRASP_SECONDS

    def evaluate(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, bool]:
        grasps = self._latched
        grasps["grasp_old"] = grasps["grasp_old"] or self._grasped(model, data, OLD)
        grasps["grasp_new"] = grasps["grasp_new"] or self._grasped(model, data, NEW)
        return {
            "grasp_old": grasps["grasp_old"],
            "remove_old": grasps["grasp_old"] and bool(self.removed(model, data)),
            "grasp_new": grasps["grasp_new"],
            "place_new": grasps["grasp_new"] and bool(self.placed(model, data)),
        }

    def expert(self, env):
        return WaypointExpert(env, lambda: self._plan(env))

    # -- scripted expert ---------------------------------------------------------------
    def _plan(self, env):
        """The right arm lifts the old roll off the spindle and stands it on the table; the
        left arm picks the new roll up across its middle, turns it upright with the wrist,
        lines its hole up with the spindle (from the roll's measured pose) and lowers it."""
        model, data = env.model, env.data
        ids = self._bind(model)
        bases = [data.xpos[b][:2].copy() for b in ids["bases"]]
        spindle = data.xpos[ids["holder"]].copy()
        side = math.pi / 2  # a hand pointing horizontally

        def heading(arm: int, xy) -> float:
            reach = np.asarray(xy)[:2] - bases[arm]
            return math.atan2(reach[1], reach[0])

        def toward(arm: int, xy) -> np.ndarray:
            h = heading(arm, xy)
            return np.array([math.cos(h), math.sin(h), 0.0])

        def right(pos, gripper, seconds, yaw=None, tilt=side):
            yaw = heading(1, pos) + math.pi / 2 if yaw is None else yaw
            return (None, Waypoint(np.asarray(pos, float), yaw, gripper, seconds, tilt))

        def left(pos, gripper, seconds, yaw, tilt=0.0):
            return (Waypoint(np.asarray(pos, float), yaw, gripper, seconds, tilt, symmetric=False), None)

        # Old roll: approach from the side at mid-height, pinch, lift clear, stand it down.
        old, _ = self.roll_frame(model, data, OLD)
        yaw_r = heading(1, old) + math.pi / 2
        yield right(old - 0.10 * toward(1, old), 1.0, 1.5, yaw_r)
        yield right(old, 1.0, 0.8, yaw_r)
        yield right(old, 0.0, 0.4, yaw_r)
        lift = spindle[2] + SPINDLE_TOP + 0.03 - (old[2] - ROLL_HEIGHT / 2)
        yield right(old + [0, 0, lift], 0.0, 1.5, yaw_r)
        drop = np.append(OLD_ROLL_DROP, old[2] + lift)
        yield right(drop, 0.0, 1.2)
        down = np.append(OLD_ROLL_DROP, ROLL_HEIGHT / 2 + 0.005)
        yield right(down, 0.0, 1.0)
        yield right(down, 1.0, 0.4)
        yield right(down - 0.10 * toward(1, down) + [0, 0, 0.08], 1.0, 0.8)

        # New roll: pinch across its middle from above, jaw closing across the roll axis,
        # on the side that will let the wrist turn the roll upright towards the holder.
        new, axis = self.roll_frame(model, data, NEW)
        target_yaw = heading(0, spindle) + math.pi / 2  # jaw yaw once the hand points at the holder
        axis_yaw = math.atan2(axis[1], axis[0])
        grasp_yaw = min((axis_yaw + math.pi / 2 + k * math.pi for k in range(-2, 3)),
                        key=lambda y: abs(_wrap(y - target_yaw)))
        yield left(new + [0, 0, 0.10], 1.0, 1.5, grasp_yaw)
        yield left(new, 1.0, 0.8, grasp_yaw)
        yield left(new, 0.0, 0.4, grasp_yaw)
        # Turn it upright close to the arm, where a downward hand is still within reach, then
        # carry it over the holder with the hand pointing at the spindle.
        lifted = new + [0, 0, 0.16]
        yield left(lifted, 0.0, 1.0, grasp_yaw)
        yield left(lifted, 0.0, 0.8, target_yaw)
        yield left(lifted + [0, 0, 0.10], 0.0, 1.2, target_yaw, tilt=side)
        above = np.append(spindle[:2] - 0.04 * toward(0, spindle)[:2], SPINDLE_TOP + ROLL_HEIGHT / 2 + 0.06)
        yield left(above, 0.0, 1.5, target_yaw, tilt=side)
        yield left(above, 0.0, 0.5, target_yaw, tilt=side)  # let the roll stop swinging

        # Line the roll's bottom up with the spindle from where the roll really is.
        def tcp() -> np.ndarray:
            return data.site_xpos[model.site(aloha.LEFT.tcp_site).id].copy()

        centre, axis = self.roll_frame(model, data, NEW)
        axis = axis if axis[2] >= 0 else -axis
        bottom = centre - axis * ROLL_HEIGHT / 2
        shift = np.array([spindle[0] - bottom[0], spindle[1] - bottom[1],
                          spindle[2] + SPINDLE_TOP + 0.02 - bottom[2]])
        aligned = tcp() + shift
        yield left(aligned, 0.0, 1.0, target_yaw, tilt=side)
        seat = aligned - [0, 0, SPINDLE_HEIGHT + 0.02 - 0.008]
        yield left(seat, 0.0, 2.5, target_yaw, tilt=side)
        yield left(seat, 1.0, 0.4, target_yaw, tilt=side)
        yield left(seat - 0.10 * toward(0, spindle), 1.0, 0.8, target_yaw, tilt=side)
        yield left(seat - 0.10 * toward(0, spindle) + [0, 0, 0.15], 1.0, 0.8, target_yaw, tilt=side)


def _yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    return (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))


def _lying_quat(axis_yaw: float) -> np.ndarray:
    """A roll on its side whose axis points along `axis_yaw`: turn z onto x, then yaw."""
    pitch = np.array([math.cos(math.pi / 4), 0.0, math.sin(math.pi / 4), 0.0])
    out = np.empty(4)
    mujoco.mju_mulQuat(out, np.array(_yaw_quat(axis_yaw)), pitch)
    return out


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi
