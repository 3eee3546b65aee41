"""The policy contract every policy family implements (openpi/LeRobot-shaped)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """`act` maps one observation to an action chunk [H, D]; the rollout loop executes the
    first `execute_steps` rows (None = the whole chunk) before asking again. `metadata` holds
    at least name, version and checkpoint hash. An instance plays one episode at a time;
    `reset` rebinds (never mutates in place) everything an episode changes, so `sibling` can
    give another episode its own state while the weights are shared. A family may add a
    classmethod `act_batch(policies, observations)` that answers several of its instances in
    one forward pass (see `act_batch` below)."""

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


class RecipeBase:
    """The `Recipe` members every family implements the same way, from its class attributes
    (`configs`, `config_class`, `model_class`) and its config; a family adds the rest."""

    configs: dict
    config_class: type
    model_class: type
    history = 1  # observation frames a window carries; a family that stacks frames overrides it

    def __init__(self, config):
        self.config = config

    @property
    def chunk(self) -> int:
        """Actions one window predicts (every family's config calls it `horizon`)."""
        return self.config.horizon

    @classmethod
    def from_name(cls, name: str):
        return cls(cls.configs[name])

    @classmethod
    def from_dict(cls, data: dict, directory=None):
        return cls(cls.config_class.from_dict(data))

    def config_dict(self) -> dict:
        return self.config.to_dict()

    @property
    def default_lr(self) -> float:
        return self.config.lr

    def build(self):
        return self.model_class(self.config)


def sibling(policy: Policy) -> Policy:
    """Another instance of `policy` that shares its model, normalizer and options (read-only
    at inference) but has its own episode state: how one process holds one copy of the weights
    for many simultaneous episodes."""
    twin = copy.copy(policy)
    twin.reset("", 0)
    return twin


def act_batch(policies: Sequence[Policy], observations: Sequence[dict], rows: int | None = None) -> list[np.ndarray]:
    """One chunk per (policy, observation): in one batched forward pass when every policy is
    of one family that implements `act_batch` natively (siblings sharing one model), else one
    `act` after another. Each policy's own state (history, queue, noise generator) is used
    exactly as a lone `act` would use it.

    `rows`: run the forward pass on exactly this many rows (the real ones, then copies of the
    last; `padded`). CPU kernels round differently at different batch sizes (a row of a 3-row
    pass can differ from the same row alone by ~1e-7), but at one shape and layout a row's
    result does not depend on the other rows, so a fixed `rows` makes results independent of
    which calls happened to arrive together."""
    kind = type(policies[0])
    native = getattr(kind, "act_batch", None)
    if native is not None and all(type(p) is kind for p in policies) and \
            len({id(getattr(p, "model", None)) for p in policies}) == 1:
        return native(policies, observations, rows)
    return [policy.act(obs) for policy, obs in zip(policies, observations)]


def padded(items: list, rows: int | None) -> list:
    """`items` (one per row, before stacking) with the last repeated up to `rows`: padding
    before the stack gives the tensors the very layout a full batch has, which the kernels'
    rounding depends on too."""
    return list(items) + [items[-1]] * max(0, (rows or 0) - len(items))


def stack_rows(tensors: list):
    """The rows as one batch tensor; a lone row as a view with a batch dimension, exactly what
    a single `act` has always fed the model (a stacked copy can have another memory layout)."""
    import torch

    return tensors[0][None] if len(tensors) == 1 else torch.stack(tensors)
