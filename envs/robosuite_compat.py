"""robosuite 1.5.2 on the project's pinned MuJoCo (3.17), adapted from outside robosuite.

robosuite 1.5.2 was written against MuJoCo < 3.10 and breaks on 3.17 in exactly three places
(../shared/docs/VERSIONS.md). Each is adapted here by replacing one attribute of one robosuite
object, never by editing robosuite's installed files, and only when robosuite is imported
through `import_robosuite()` (the project's robosuite tasks do that; a bare `import
robosuite` elsewhere is left alone):

1. `joint_type`: `MjModel.get_joint_qpos_addr/qvel_addr` assert `jnt_type[id] in (mjJNT_HINGE,
   mjJNT_SLIDE)`. The element is a numpy int32, and MuJoCo's enum answers False when compared
   with one (from 3.12), so every hinge and slide joint fails the assert. robosuite's model
   wrapper is given a `jnt_type` that holds `mujoco.mjtJoint` members, which compare right.
2. `qM`: `MjData.qM`, the packed joint-space inertia the controllers read, no longer exists
   (from 3.11; MuJoCo keeps the inertia as `M`, in compressed-sparse-row order). robosuite's
   data wrapper is given a `qM` that rebuilds the packed array from `M` (`qM[mapM2M] = M`).
3. `mj_fullM`: robosuite calls `mj_fullM(m, dst, qM)`; from 3.10 it is `mj_fullM(m, d, dst)`.
   robosuite's controller module sees, instead of the `mujoco` module, a view of it whose
   `mj_fullM` takes the old arguments and expands the packed inertia itself.

`tests/test_robosuite.py` checks that each adaptation is needed (robosuite's own code fails
with the original attribute put back) and that it gives MuJoCo's own answer.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import mujoco
import numpy as np

from pi0bench.errors import UserError

ROBOSUITE_VERSION = "1.5.2"
INSTALL_HINT = (f"pip install 'pi0bench[robosuite]' && pip install --no-deps robosuite=={ROBOSUITE_VERSION} "
                "(make venv does both)")


@dataclass
class Adaptation:
    """One attribute of a robosuite object, replaced; `original` keeps what was there."""

    name: str
    owner: Any  # a class or module of robosuite
    attribute: str
    replacement: Any
    original: Any = field(default=None, repr=False)

    def apply(self) -> None:
        self.original = self.owner.__dict__.get(self.attribute)
        setattr(self.owner, self.attribute, self.replacement)


ADAPTATIONS: dict[str, Adaptation] = {}


def import_robosuite() -> ModuleType:
    """robosuite, adapted to this MuJoCo (once per process). A missing or other version of
    robosuite is a one-line UserError saying how to install the right one."""
    try:
        robosuite = _quiet_import()
    except ImportError as exc:
        raise UserError(f"robosuite tasks need robosuite {ROBOSUITE_VERSION} ({exc}); {INSTALL_HINT}") from None
    if robosuite.__version__ != ROBOSUITE_VERSION:
        raise UserError(f"robosuite tasks are adapted to robosuite {ROBOSUITE_VERSION}, found "
                        f"{robosuite.__version__}; {INSTALL_HINT}")
    if not ADAPTATIONS:
        for adaptation in _adaptations():
            adaptation.apply()
            ADAPTATIONS[adaptation.name] = adaptation
    return robosuite


def _quiet_import() -> ModuleType:
    """Import robosuite without its import-time warnings (no private macro file, optional robot
    models, the mink whole-body IK: features the project does not use), and keep its log to
    warnings (it logs every controller configuration it loads at INFO)."""
    logger = logging.getLogger("robosuite_logs")
    quiet = _BelowError()
    logger.addFilter(quiet)
    try:
        robosuite = importlib.import_module("robosuite")
    finally:
        logger.removeFilter(quiet)
    logger.setLevel(logging.WARNING)
    return robosuite


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _adaptations() -> list[Adaptation]:
    from robosuite.controllers.parts import controller
    from robosuite.utils import binding_utils

    return [
        Adaptation("joint_type", binding_utils.MjModel, "jnt_type", property(_joint_types)),
        Adaptation("qM", binding_utils.MjData, "qM", property(_packed_inertia)),
        Adaptation("mj_fullM", controller, "mujoco", _MujocoWithLegacyFullM()),
    ]


def _joint_types(model) -> tuple[mujoco.mjtJoint, ...]:
    """robosuite's `sim.model.jnt_type`, as enum members (they compare equal to the enums)."""
    return tuple(mujoco.mjtJoint(int(t)) for t in model._model.jnt_type)


def _packed_inertia(data) -> np.ndarray:
    """robosuite's `sim.data.qM`: the inertia in MuJoCo's packed (pre-3.11) layout, rebuilt from
    the sparse `M` through the model's own index map. The entries `M` leaves out (couplings
    inside a simple body's free joint) are structural zeros."""
    model = data.model._model
    packed = np.zeros(model.nM)
    packed[model.mapM2M] = data._data.M
    return packed


class _MujocoWithLegacyFullM:
    """The `mujoco` module as robosuite's controller module sees it: everything is MuJoCo's own
    except `mj_fullM`, which takes the pre-3.10 arguments (m, dst, packed qM)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(mujoco, name)

    @staticmethod
    def mj_fullM(model: mujoco.MjModel, dst: np.ndarray, packed: np.ndarray) -> None:
        """Fill `dst` (nv x nv) with the symmetric inertia whose lower triangle `packed` holds."""
        dense = np.zeros((model.nv, model.nv))
        rows = np.repeat(np.arange(model.nv), model.M_rownnz)
        dense[rows, model.M_colind] = packed[model.mapM2M]
        dst[...] = (dense + np.tril(dense, -1).T).reshape(dst.shape)
