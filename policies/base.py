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


@runtime_checkable
class Recipe(Protocol):
    """How the training pipeline and the checkpoint loader handle one trainable family
    (pi0, act, dp, octo, openvla, openvla-oft): its configs, how a model is built and batched,
    and its loss. `train` and `checkpoint` use exactly these members."""

    name: str  # the policy name checkpoints record
    default_config: str  # a key of `configs`
    configs: dict  # named model configs (e.g. "act-small")
    config: object  # this recipe's model config

    @property
    def history(self) -> int:
        """Observation frames one training window carries."""

    @property
    def chunk(self) -> int:
        """Actions one training window predicts."""

    @property
    def default_lr(self) -> float: ...

    @classmethod
    def from_name(cls, name: str) -> Recipe: ...

    @classmethod
    def from_dict(cls, data: dict, directory=None) -> Recipe: ...

    def for_datasets(self, infos: list[dict]) -> Recipe:
        """The recipe fitted to the datasets it will train on (dims, cameras, robots)."""

    def config_dict(self) -> dict: ...

    def build(self): ...

    def collate(self, samples: list[dict], normalizers: dict) -> dict: ...

    def loss(self, model, batch: dict): ...
