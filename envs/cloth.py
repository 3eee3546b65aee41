"""Cloth as a MuJoCo flex, and grippers that hold it only when they pinch it.

The towel is a square 2-D flex grid (SIM_NOTES: the configuration that folds on this MuJoCo):
edge lengths kept by equality constraints, bending stiffness from `elastic2d="bend"`, self
collision on. Vertex i of an n × n grid is body `<name>_<i>` with i = ix·n + iy; it has three
slide joints and no rotation.

Cloth collides with the world (table) and itself, not with the robot: thin finger pads
against 4 mm cloth vertices tunnel and jitter, and friction alone never held cloth in the
measurements. A gripper holds cloth the way `ClothGrasp` decides, from its finger joints only.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from pi0bench.envs import viperx

CLOTH_CONTACT = 'contype="4" conaffinity="5"'  # itself and the world (contype 1); not the robot (2)
VERTEX_RADIUS = 0.004
# Cloth-on-cloth friction: at 1.0 the top layers of a quarter fold slid off the crease bulge
# (corners 5-9 cm apart after settling); at 2.5 the towel dragged on the table in the first
# fold; 1.7 held the layers in every seed tried.
CLOTH_FRICTION = 1.7


def towel_mjcf(name: str, count: int, side: float, mass: float = 0.05, rgba: str = "0.2 0.45 0.8 1") -> str:
    """A flat square towel centred on its body's origin (the task moves the vertices)."""
    spacing = side / (count - 1)
    return f"""
    <flexcomp name="{name}" type="grid" dim="2" count="{count} {count} 1"
              spacing="{spacing:.6g} {spacing:.6g} {spacing:.6g}" pos="0 0 {VERTEX_RADIUS}"
              radius="{VERTEX_RADIUS}" mass="{mass}" rgba="{rgba}">
      <contact condim="3" selfcollide="auto" friction="{CLOTH_FRICTION} 0.005 0.0001" {CLOTH_CONTACT}/>
      <edge equality="true"/>
      <elasticity young="1e3" poisson="0" thickness="1e-3" elastic2d="bend"/>
    </flexcomp>"""


@dataclass(frozen=True)
class Pinch:
    """The volume between a gripper's pads, in its tcp frame (z approach, y closing); the
    defaults are the ViperX pads grown by the cloth's contact radius."""

    half_width: float = viperx.PAD_HALF_WIDTH + VERTEX_RADIUS  # across the pads (tcp x)
    half_length: float = viperx.PAD_HALF_LENGTH + VERTEX_RADIUS  # along the approach (tcp z)
    closed_at: float = 0.3  # jaw opening (fraction of full) at which the fingers count as shut
    released_at: float = 0.45  # jaw opening at which a held cloth is let go / a jaw is re-armed
    slots: int = 3  # vertices one pinch can hold (a folded corner has two or more layers)


class ClothGrasp:
    """Connect-equality grasps between grippers and flex vertices.

    Per gripper: when the jaw closes (opening drops to `closed_at`) after having been open,
    every cloth vertex then lying between the pads is connected to the gripper body at its
    current offset (zero constraint error at switch-on); opening the jaw again releases it.
    A jaw that closes on nothing stays empty until it has opened again, so a closed gripper
    swept through cloth never picks it up. There is no grasp action: policies only move the
    fingers, as on the real robot.
    """

    def __init__(self, flex: str, tcp_sites: list[str], finger_joints: list[list[str]],
                 stroke: float, pinch: Pinch = Pinch()):
        self.flex = flex
        self.tcp_sites = tcp_sites
        self.finger_joints = finger_joints
        self.stroke = stroke
        self.pinch = pinch
        self._model: mujoco.MjModel | None = None

    def add_slots(self, spec: mujoco.MjSpec, gripper_bodies: list[str]) -> None:
        """Declare inactive connect equalities (retargeted at run time) on an uncompiled
        scene. Stiff solref/solimp keep a lifted corner within ~0.3 mm of the pads."""
        for g, body in enumerate(gripper_bodies):
            for k in range(self.pinch.slots):
                spec.add_equality(
                    name=f"{self.flex}_grasp_{g}_{k}", type=mujoco.mjtEq.mjEQ_CONNECT,
                    objtype=mujoco.mjtObj.mjOBJ_BODY, name1=body, name2=f"{self.flex}_0",
                    active=False, solref=[0.004, 1.0], solimp=[0.95, 0.99, 0.001, 0.5, 2.0],
                )

    def bind(self, model: mujoco.MjModel) -> None:
        if self._model is model:
            return
        self._model = model
        flex = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_FLEX, self.flex)
        start = model.flex_vertadr[flex]
        self.vertex_bodies = model.flex_vertbodyid[start:start + model.flex_vertnum[flex]].copy()
        self.tcp_ids = [model.site(s).id for s in self.tcp_sites]
        self.gripper_bodies = [int(model.site_bodyid[t]) for t in self.tcp_ids]
        self.finger_qpos = [np.array([model.joint(j).qposadr[0] for j in pair]) for pair in self.finger_joints]
        self.slots = [[model.equality(f"{self.flex}_grasp_{g}_{k}").id for k in range(self.pinch.slots)]
                      for g in range(len(self.tcp_sites))]
        self.reset(None)

    def reset(self, data: mujoco.MjData | None) -> None:
        """Forget all grasps; a jaw that is open now is armed."""
        self.held: list[list[int]] = [[] for _ in self.tcp_sites]
        self.armed = [True for _ in self.tcp_sites]
        if data is not None:
            for g, slots in enumerate(self.slots):
                data.eq_active[slots] = 0
                self.armed[g] = self.opening(data, g) >= self.pinch.released_at

    def opening(self, data: mujoco.MjData, gripper: int) -> float:
        return float(data.qpos[self.finger_qpos[gripper]].mean() / self.stroke)

    def update(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        """Engage or release each gripper from its jaw opening; call before every control
        period's physics."""
        self.bind(model)
        for g in range(len(self.tcp_sites)):
            opening = self.opening(data, g)
            if self.held[g]:
                if opening >= self.pinch.released_at:
                    data.eq_active[self.slots[g]] = 0
                    self.held[g] = []
                    self.armed[g] = True
            elif self.armed[g] and opening <= self.pinch.closed_at:
                self.armed[g] = False
                self._engage(model, data, g, opening)
            elif not self.armed[g] and opening >= self.pinch.released_at:
                self.armed[g] = True

    def vertices_in_pinch(self, data: mujoco.MjData, gripper: int, opening: float) -> np.ndarray:
        """Vertex indices between the pads, nearest the tcp first."""
        tcp = self.tcp_ids[gripper]
        local = (data.xpos[self.vertex_bodies] - data.site_xpos[tcp]) @ data.site_xmat[tcp].reshape(3, 3)
        half_gap = opening * self.stroke + VERTEX_RADIUS
        inside = ((np.abs(local[:, 0]) <= self.pinch.half_width)
                  & (np.abs(local[:, 1]) <= half_gap)
                  & (np.abs(local[:, 2]) <= self.pinch.half_length))
        candidates = np.flatnonzero(inside)
        return candidates[np.argsort(np.linalg.norm(local[candidates], axis=1))]

    def _engage(self, model: mujoco.MjModel, data: mujoco.MjData, gripper: int, opening: float) -> None:
        body = self.gripper_bodies[gripper]
        rot = data.xmat[body].reshape(3, 3)
        chosen = self.vertices_in_pinch(data, gripper, opening)[: self.pinch.slots]
        for slot, vertex in zip(self.slots[gripper], chosen):
            vertex_body = self.vertex_bodies[vertex]
            model.eq_obj2id[slot] = vertex_body
            model.eq_data[slot, 0:3] = rot.T @ (data.xpos[vertex_body] - data.xpos[body])
            model.eq_data[slot, 3:6] = 0.0
            data.eq_active[slot] = 1
        self.held[gripper] = [int(v) for v in chosen]

    def holding(self) -> bool:
        return any(self.held)
