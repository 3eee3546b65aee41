"""Perturbations of what a policy sees and of how the world behaves, for robustness runs.

Each (axis, level) is a pure function of the episode's seed (itself a pure function of task,
base seed and episode index), so the same command gives the same perturbed episode on any
machine or worker count. Levels go from 1 (mild) to 3 (strong); `RANGES` holds every number.

| axis | what changes | never changes |
|---|---|---|
| camera | fixed cameras (those on the world body) moved by a random offset and turned about a random axis | wrist cameras, physics |
| light | each light's diffuse intensity scaled, its direction tilted; ambient light added; shadows on at level 3 | physics |
| appearance | the colour of every geom that is not the robot's (table, floor, task objects) and of the towel | shapes, physics |
| distractors | N extra boxes and cylinders placed on the table outside the task's workspace (real bodies) | the rubric, which judges only the task's objects |
| language | the instruction replaced by a paraphrase (level 1 close, 2 reworded, 3 indirect) | everything else |
| init | every initial-state range of the task widened about its centre | the task |
| dynamics | friction, masses and joint damping of the task's objects (the towel: friction and bending stiffness) scaled, log-uniformly | the robot |
| sensor | Gaussian noise on the state vector and on every image | the simulation |
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import mujoco
import numpy as np

from pi0bench.errors import UserError

AXES = ("camera", "light", "appearance", "distractors", "language", "init", "dynamics", "sensor")
LEVELS = (1, 2, 3)
VISUAL_AXES = ("camera", "light", "appearance")  # change images only, never the physics

RANGES: dict[str, dict[int, dict]] = {
    "camera": {1: {"offset_m": 0.02, "turn_deg": 2.0}, 2: {"offset_m": 0.05, "turn_deg": 5.0},
               3: {"offset_m": 0.10, "turn_deg": 10.0}},
    "light": {1: {"intensity": 0.2, "tilt_deg": 10.0, "ambient": 0.05, "shadows": False},
              2: {"intensity": 0.4, "tilt_deg": 20.0, "ambient": 0.15, "shadows": False},
              3: {"intensity": 0.6, "tilt_deg": 35.0, "ambient": 0.25, "shadows": True}},
    "appearance": {1: {"rgb_shift": 0.10}, 2: {"rgb_shift": 0.25}, 3: {"rgb_shift": 0.45}},
    "distractors": {1: {"count": 1}, 2: {"count": 2}, 3: {"count": 4}},
    "language": {1: {}, 2: {}, 3: {}},
    "init": {1: {"spread": 1.25}, 2: {"spread": 1.5}, 3: {"spread": 2.0}},
    "dynamics": {1: {"factor": 1.25}, 2: {"factor": 1.6}, 3: {"factor": 2.0}},  # × or ÷ up to this
    "sensor": {1: {"state_std": 0.002, "image_std": 4.0}, 2: {"state_std": 0.005, "image_std": 8.0},
               3: {"state_std": 0.01, "image_std": 16.0}},
}

# Paraphrases per task and level, written for this benchmark.
PARAPHRASES: dict[str, dict[int, tuple[str, ...]]] = {
    "towel_fold": {
        1: ("fold the towel please", "fold this towel", "please fold the towel"),
        2: ("fold the cloth in half and then in half again", "make the towel into a small folded square"),
        3: ("the towel on the table is spread out flat, tidy it up by folding it twice",
            "i would like that piece of cloth neatly folded into quarters"),
    },
    "paper_towel_replace": {
        1: ("replace the paper towel roll please", "replace the roll of paper towels",
            "please replace the paper towel roll"),
        2: ("swap the empty paper towel roll for the new one", "take off the old roll and put on the full one"),
        3: ("the holder has an almost empty roll on it, change it for the fresh roll lying on the table",
            "the paper towels are running out, so put the full roll where the old one is"),
    },
    "drawer_tidy": {
        1: ("put the items in the drawer and close it please", "put the objects in the drawer and close it",
            "please put the items in the drawer, then close it"),
        2: ("open the drawer, store the things from the table inside and shut it",
            "tidy the table by putting everything into the drawer and closing it"),
        3: ("the table is cluttered, so clear it into the drawer and leave the drawer shut",
            "nothing should be left lying on the table: stow it all in the drawer and push it closed"),
    },
}

# Distractors: alternately boxes and cylinders of these half-sizes (m), fixed when the env is
# built; each episode draws where they stand and their colours.
DISTRACTOR_SIZES = (0.025, 0.018, 0.022, 0.015)


@dataclass(frozen=True, order=True)
class Perturbation:
    axis: str
    level: int

    def __str__(self) -> str:
        return f"{self.axis}={self.level}"


def parse_perturbation(text: str) -> Perturbation:
    """'camera=2' -> Perturbation('camera', 2), with one-line errors naming the fix."""
    axis, sep, level = text.partition("=")
    axis = axis.strip()
    if not sep:
        raise UserError(f"--perturb {text!r} is not AXIS=LEVEL (e.g. camera=2)")
    if axis not in AXES:
        raise UserError(f"unknown perturbation axis {axis!r}; choose from: {', '.join(AXES)}")
    if level.strip() not in {str(v) for v in LEVELS}:
        raise UserError(f"perturbation level {level.strip()!r} of {axis} is not one of {', '.join(map(str, LEVELS))}")
    return Perturbation(axis, int(level))


def check_perturbations(perturbations: tuple[Perturbation, ...]) -> tuple[Perturbation, ...]:
    """Sorted, one level per axis."""
    axes = [p.axis for p in perturbations]
    twice = sorted({a for a in axes if axes.count(a) > 1})
    if twice:
        raise UserError(f"--perturb gives {', '.join(twice)} more than once; give each axis one level")
    for p in perturbations:
        if p.axis not in AXES or p.level not in LEVELS:
            raise UserError(f"unknown perturbation {p}; axes: {', '.join(AXES)}; levels: 1, 2, 3")
    return tuple(sorted(perturbations))


def _rng(episode_seed: int, axis: str, level: int) -> np.random.Generator:
    return np.random.default_rng([int(episode_seed), zlib.crc32(axis.encode()), level])


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _turn(quat: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """`quat` turned by `angle` about the world `axis`."""
    rotation = np.zeros(4)
    mujoco.mju_axisAngle2Quat(rotation, axis, angle)
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, rotation, quat)
    return out


def _log_uniform(rng: np.random.Generator, factor: float, size=None) -> np.ndarray:
    return np.exp(rng.uniform(-math.log(factor), math.log(factor), size=size))


class Perturber:
    """Applies a set of perturbations to one env: `edit_spec` before compiling (distractor
    bodies), `bind` after, then `before_reset`/`after_reset` around each reset and `observe`
    on each observation. Every model value it touches is restored to the original before the
    next episode's is drawn, so episodes never compound. With no perturbations every call is
    a no-op (a clean env copies and restores nothing)."""

    def __init__(self, perturbations: tuple[Perturbation, ...], task):
        self.levels = {p.axis: p.level for p in check_perturbations(perturbations)}
        self.task = task
        self._original: dict[str, np.ndarray] = {}
        self._sensor_rng: np.random.Generator | None = None
        self._prompt = task.instruction
        if "language" in self.levels and task.name not in PARAPHRASES:
            raise UserError(f"no paraphrases are written for task {task.name!r}; the language axis "
                            f"covers {', '.join(PARAPHRASES)}")
        if "distractors" in self.levels and not getattr(task, "clutter_regions", ()):
            raise UserError(f"task {task.name!r} declares no clutter regions for distractors")

    def level(self, axis: str) -> int | None:
        return self.levels.get(axis)

    # -- building ------------------------------------------------------------------------
    def edit_spec(self, spec: mujoco.MjSpec) -> None:
        """Add the distractor bodies (parked under the table until an episode places them)."""
        level = self.level("distractors")
        if level is None:
            return
        for i in range(RANGES["distractors"][level]["count"]):
            half = DISTRACTOR_SIZES[i % len(DISTRACTOR_SIZES)]
            body = spec.worldbody.add_body(name=f"distractor_{i}", pos=[0.0, 0.3 * i, -0.5])
            body.add_freejoint(name=f"distractor_{i}")
            body.add_geom(name=f"distractor_{i}", type=mujoco.mjtGeom.mjGEOM_CYLINDER if i % 2 else mujoco.mjtGeom.mjGEOM_BOX,
                          size=[half, half, half], mass=0.05, rgba=[0.5, 0.5, 0.5, 1.0])

    def bind(self, model: mujoco.MjModel, robot) -> None:
        """Keep the original values of everything an episode may change, and find which geoms,
        bodies and dofs are the task's (not `robot`'s: bodies under its arms' roots)."""
        if not self.levels:
            return
        robot_bodies = {int(model.body_rootid[model.site_bodyid[model.site(s).id]]) for s in robot.tcp_sites}
        for name in ("cam_pos", "cam_quat", "light_diffuse", "light_dir", "light_ambient", "light_castshadow",
                     "geom_rgba", "flex_rgba", "geom_friction", "body_mass", "body_inertia", "dof_damping",
                     "flex_friction", "flex_bending"):
            self._original[name] = getattr(model, name).copy()
        self._original["headlight_ambient"] = model.vis.headlight.ambient.copy()
        self.object_geoms = [g for g in range(model.ngeom)
                             if model.body_rootid[model.geom_bodyid[g]] not in robot_bodies]
        self.object_bodies = [b for b in range(1, model.nbody) if model.body_rootid[b] not in robot_bodies
                              and not model.body(b).name.startswith("distractor_")]
        self.object_dofs = [d for d in range(model.nv) if model.body_rootid[model.dof_bodyid[d]] not in robot_bodies]
        level = self.level("distractors")
        self.distractors = [model.body(f"distractor_{i}").id for i in range(RANGES["distractors"][level]["count"])] if level else []

    def _restore(self, model: mujoco.MjModel) -> None:
        for name, value in self._original.items():
            if name == "headlight_ambient":
                model.vis.headlight.ambient[:] = value
            else:
                getattr(model, name)[:] = value

    # -- each episode --------------------------------------------------------------------
    def before_reset(self, model: mujoco.MjModel) -> None:
        if not self.levels:
            return
        self._restore(model)
        level = self.level("init")
        self.task.init_spread = RANGES["init"][level]["spread"] if level else 1.0

    def after_reset(self, model: mujoco.MjModel, data: mujoco.MjData, episode_seed: int) -> None:
        if not self.levels:
            return
        for axis, level in self.levels.items():
            apply = getattr(self, f"_apply_{axis}", None)
            if apply is not None:
                apply(model, data, _rng(episode_seed, axis, level), RANGES[axis][level])
        level = self.level("sensor")
        self._sensor_rng = _rng(episode_seed, "sensor", level) if level else None
        level = self.level("language")
        self._prompt = (PARAPHRASES[self.task.name][level][
            int(_rng(episode_seed, "language", level).integers(len(PARAPHRASES[self.task.name][level])))]
            if level else self.task.instruction)

    def _apply_camera(self, model, data, rng, r) -> None:
        for cam in range(model.ncam):
            if model.cam_bodyid[cam] != 0:
                continue  # on the robot: a wrist camera
            model.cam_pos[cam] += _unit(rng) * r["offset_m"]
            model.cam_quat[cam] = _turn(model.cam_quat[cam], _unit(rng), math.radians(r["turn_deg"]))

    def _apply_light(self, model, data, rng, r) -> None:
        for light in range(model.nlight):
            model.light_diffuse[light] = np.clip(
                model.light_diffuse[light] * (1 + rng.uniform(-r["intensity"], r["intensity"])), 0, 1)
            tilt_axis = np.cross(model.light_dir[light], _unit(rng))
            tilt_axis /= max(np.linalg.norm(tilt_axis), 1e-9)
            turned = np.zeros(3)
            quat = np.zeros(4)
            mujoco.mju_axisAngle2Quat(quat, tilt_axis, math.radians(r["tilt_deg"]))
            mujoco.mju_rotVecQuat(turned, model.light_dir[light], quat)
            model.light_dir[light] = turned
            model.light_castshadow[light] = r["shadows"]
        model.vis.headlight.ambient[:] = np.clip(model.vis.headlight.ambient + r["ambient"], 0, 1)

    def _apply_appearance(self, model, data, rng, r) -> None:
        shift = r["rgb_shift"]
        for g in self.object_geoms:
            model.geom_rgba[g, :3] = np.clip(model.geom_rgba[g, :3] + rng.uniform(-shift, shift, 3), 0, 1)
        for f in range(model.nflex):
            model.flex_rgba[f, :3] = np.clip(model.flex_rgba[f, :3] + rng.uniform(-shift, shift, 3), 0, 1)

    def _apply_distractors(self, model, data, rng, r) -> None:
        regions = self.task.clutter_regions
        placed: list[np.ndarray] = []
        for body in self.distractors:
            geom = model.body_geomadr[body]
            half = float(model.geom_size[geom, 0])
            model.geom_rgba[geom] = (*rng.uniform(0.1, 0.9, 3), 1.0)
            for _ in range(100):
                x0, x1, y0, y1 = regions[int(rng.integers(len(regions)))]
                xy = np.array([rng.uniform(x0 + half, x1 - half), rng.uniform(y0 + half, y1 - half)])
                if all(np.linalg.norm(xy - other) >= 2.5 * max(DISTRACTOR_SIZES) for other in placed):
                    break
            placed.append(xy)
            adr = model.jnt_qposadr[model.body_jntadr[body]]
            yaw = rng.uniform(-math.pi, math.pi)
            data.qpos[adr:adr + 7] = (*xy, half + 0.0005, math.cos(yaw / 2), 0, 0, math.sin(yaw / 2))

    def _apply_dynamics(self, model, data, rng, r) -> None:
        factor = r["factor"]
        for g in self.object_geoms:
            model.geom_friction[g, 0] *= _log_uniform(rng, factor)
        for b in self.object_bodies:
            scale = _log_uniform(rng, factor)
            model.body_mass[b] *= scale
            model.body_inertia[b] *= scale
        for d in self.object_dofs:
            model.dof_damping[d] *= _log_uniform(rng, factor)
        if model.nflex:
            model.flex_friction[:, 0] *= _log_uniform(rng, factor)
            model.flex_bending[:] *= _log_uniform(rng, factor)
        # Masses feed constants MuJoCo derives once at compile time (subtree masses, the inverse
        # weights that scale every contact's softness); left stale, a lightened object gets
        # contacts stiffer than its mass can take and the simulation diverges.
        mujoco.mj_setConst(model, mujoco.MjData(model))

    def observe(self, obs: dict) -> dict:
        """The observation as the perturbed sensors report it."""
        obs["prompt"] = self._prompt
        if self._sensor_rng is not None:
            r = RANGES["sensor"][self.levels["sensor"]]
            rng = self._sensor_rng
            obs["state"] = (obs["state"] + rng.normal(0.0, r["state_std"], obs["state"].shape)).astype(np.float32)
            obs["images"] = {name: np.clip(image + rng.normal(0.0, r["image_std"], image.shape), 0, 255).astype(np.uint8)
                             for name, image in obs["images"].items()}
        return obs
