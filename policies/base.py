"""The policy contract every policy family implements (openpi/LeRobot-shaped)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """`act` maps one observation to an action chunk [H, D]; the rollout loop executes the
    first `execute_steps` rows (None = the whole chunk) before asking again. `metadata` holds
    at least name, version and checkpoint hash. An instance is never shared between workers."""

    metadata: dict
    execute_steps: int | None

    def reset(self, task: str, seed: int) -> None: ...

    def act(self, obs: dict) -> np.ndarray: ...
