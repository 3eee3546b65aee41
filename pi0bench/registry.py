"""Names → factories for tasks and policies. Adding a task or policy is one line here."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from pi0bench.checkpoint import check_fits, require, resolve
from pi0bench.envs.description import EnvDescription, describe_task
from pi0bench.errors import UserError
from pi0bench.tasks import TASKS, make_own_task  # the project's own tasks
from pi0bench.wire import REMOTE_PREFIX

# Task families of optional extras: a name "<family>/<Env>" is resolved by the family's module
# (its TASKS, unavailable(), check_task, make_task and make_env). They are not among "all".
TASK_FAMILIES: dict[str, str] = {
    "robosuite": "pi0bench.tasks.robosuite_tasks",
}

# name -> (factory, one-line description)
POLICIES: dict[str, tuple[str, str]] = {
    "scripted": ("pi0bench.policies.scripted:make_scripted",
                 "the task's privileged-state expert (IK waypoints); an upper reference"),
    "random": ("pi0bench.policies.simple:make_random",
               "uniform random joint targets; a floor that must score 0"),
    "hold": ("pi0bench.policies.simple:make_hold", "keeps the initial pose; a floor that must score 0"),
    "pi0": ("pi0bench.policies.pi0.policy:make_pi0",
            "π0 flow-matching VLA (default checkpoint results/checkpoints/pi0-small; --checkpoint DIR)"),
    "act": ("pi0bench.policies.act.policy:make_act",
            "ACT, CVAE + transformer chunking (default results/checkpoints/act-small-TASK; "
            "--policy-arg temporal_ensemble=0.01)"),
    "dp": ("pi0bench.policies.dp.policy:make_dp",
           "Diffusion Policy, CNN U-Net + DDIM (default results/checkpoints/dp-small-TASK; "
           "--policy-arg inference_steps=N)"),
    "octo": ("pi0bench.policies.octo.policy:make_octo",
             "Octo, readout-token transformer + diffusion head, multi-task, trained from scratch "
             "(default results/checkpoints/octo-tiny; --checkpoint DIR)"),
    "openvla": ("pi0bench.policies.openvla.policy:make_openvla",
                "OpenVLA, SigLIP+DINOv2 into a Llama LM, 256-bin action tokens decoded one action a call "
                "(default results/checkpoints/openvla-small)"),
    "openvla-oft": ("pi0bench.policies.openvla.policy:make_openvla_oft",
                    "OpenVLA-OFT, parallel decoding of an 8-step chunk with an L1 regression head "
                    "(default results/checkpoints/openvla-oft-small)"),
}
# Trainable policies -> (the recipe the training pipeline builds, batches and scores them with,
# the default checkpoint's name on checkpoint.search_path; "{task}" for per-task policies).
# They load weights, so they (and only they) take --checkpoint.
RECIPES: dict[str, tuple[str, str]] = {
    "pi0": ("pi0bench.policies.pi0.recipe:Pi0Recipe", "pi0-small"),
    "act": ("pi0bench.policies.act.recipe:ActRecipe", "act-small-{task}"),
    "dp": ("pi0bench.policies.dp.recipe:DpRecipe", "dp-small-{task}"),
    "octo": ("pi0bench.policies.octo.recipe:OctoRecipe", "octo-tiny"),
    "openvla": ("pi0bench.policies.openvla.recipe:OpenVlaRecipe", "openvla-small"),
    "openvla-oft": ("pi0bench.policies.openvla.recipe:OpenVlaOftRecipe", "openvla-oft-small"),
}
# Policies that read the simulator's privileged state: the only factories given the live env
# (beside its description); they cannot be served or shared across processes.
PRIVILEGED: dict[str, str] = {
    "scripted": "it reads the simulator's privileged state, which only the env's own process has",
}
# Policies that sample chunks by flow matching, so real-time chunking can guide them
# (`--realtime-mode rtc`, their `act_guided`).
INPAINTING: tuple[str, ...] = ("pi0",)


def rtc_unfit_reason(policy: str) -> str | None:
    """Why `policy` cannot run `--realtime-mode rtc` (None if it can)."""
    if policy in INPAINTING:
        return None
    return (f"--realtime-mode rtc needs a flow-matching policy that inpaints its chunks "
            f"({', '.join(INPAINTING)}); {policy!r} is not one: use --realtime-mode naive or skip")


def _load(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def task_families() -> dict[str, Any]:
    """Each task family's module, by family name."""
    return {family: importlib.import_module(target) for family, target in TASK_FAMILIES.items()}


def task_family(name: str):
    """The module of the family a task name belongs to, or None for the project's own tasks."""
    family, slash, _ = name.partition("/")
    return importlib.import_module(TASK_FAMILIES[family]) if slash and family in TASK_FAMILIES else None


def check_task(name: str) -> str:
    family = task_family(name)
    if family is not None:
        return family.check_task(name)
    if name not in TASKS:
        families = "".join(f", {f}/<Env>" for f in TASK_FAMILIES)
        raise UserError(f"unknown task {name!r}; choose from: {', '.join(sorted(TASKS))}{families} "
                        "(see pi0bench tasks)")
    return name


# `remote:ws://HOST:PORT` names any openpi-protocol server; it is not in POLICIES, so "all"
# never includes it.
REMOTE = ("pi0bench.policies.remote:make_remote",
          "any openpi-protocol policy server (openpi's own, or `pi0bench serve`); "
          "--policy-arg timeout_s=30 layout=auto|native|aloha|droid")
REMOTE_EXAMPLE = f"{REMOTE_PREFIX}ws://HOST:PORT"


def is_remote(name: str) -> bool:
    return name.startswith(REMOTE_PREFIX)


def check_policy(name: str) -> str:
    if is_remote(name):
        from pi0bench.policies.remote import check_url

        check_url(name)
        return name
    if name not in POLICIES:
        raise UserError(f"unknown policy {name!r}; choose from: {', '.join(sorted(POLICIES))}, "
                        f"or {REMOTE_EXAMPLE}")
    return name


def _factory(name: str) -> str:
    return REMOTE[0] if is_remote(check_policy(name)) else POLICIES[name][0]


def make_task(name: str):
    family = task_family(check_task(name))
    return family.make_task(name) if family else make_own_task(name)


def make_env(name: str, cameras: tuple[str, ...] | None = None, image_size: int = 128,
             perturbations: tuple = ()):
    """The gymnasium env a task runs in: TaskEnv for the project's tasks, the family's own for
    a family's (every policy then drives either through the same loop). `perturbations`
    (robustness runs) apply to the project's tasks only."""
    family = task_family(check_task(name))
    if family is not None:
        if perturbations:
            raise UserError(f"--perturb applies to the project's tasks ({', '.join(sorted(TASKS))}), not {name!r}")
        return family.make_env(name, cameras=cameras, image_size=image_size)
    from pi0bench.envs.task_env import TaskEnv

    return TaskEnv(name, cameras=cameras, image_size=image_size, perturbations=perturbations)


def describe_policy(name: str) -> str:
    return REMOTE[1] if is_remote(check_policy(name)) else POLICIES[name][1]


def check_checkpoint(name: str, checkpoint: str | None) -> None:
    """A --checkpoint must belong to a trainable policy and exist, before any run directory
    is made for it."""
    if checkpoint and check_policy(name) not in RECIPES:
        raise UserError(f"policy {name!r} takes no --checkpoint; only {', '.join(sorted(RECIPES))} do")
    if checkpoint:
        require(Path(checkpoint), name)


def policy_options(name: str) -> list[str]:
    """The keyword options a policy's factory takes beyond what every factory is given."""
    factory = _load(_factory(name))
    given = ("description", "env", "checkpoint", "url")
    return [p for p in inspect.signature(factory).parameters if p not in given]


def check_policy_args(name: str, args: dict[str, Any]) -> None:
    allowed = policy_options(name)
    for key in args:
        if key == "device" and key not in allowed:
            raise UserError(f"policy {name!r} runs no model of its own: --device applies to "
                            f"{', '.join(sorted(RECIPES))}")
        if key not in allowed:
            choices = ", ".join(allowed) if allowed else "none"
            raise UserError(f"policy {name!r} has no option {key!r}; its options: {choices}")
    if "device" in args:  # before any worker starts or weight is read
        from pi0bench.policies.device import torch_device

        torch_device(args["device"])


def describe_env(task: str, cameras: tuple[str, ...] | None = None, image_size: int = 128) -> EnvDescription:
    """A task's env description without building the env (a family's tasks, whose robots are
    read from a built simulator, build and close one)."""
    family = task_family(check_task(task))
    if family is not None:
        env = family.make_env(task, cameras=cameras, image_size=image_size)
        try:
            return env.description
        finally:
            env.close()
    return describe_task(make_own_task(task), cameras, (image_size, image_size))


def checkpoint_dir(policy: str, description: EnvDescription, checkpoint: str | None = None) -> Path:
    """The checkpoint a trainable policy loads for `description`: `checkpoint` when given, else
    its default found on the search path (one line saying where it looked if none)."""
    return resolve(checkpoint, RECIPES[policy][1].format(task=description.task), policy)


def unfit_reason(policy: str, description: EnvDescription, checkpoint: str | None = None) -> str | None:
    """Why `policy` cannot drive the env `description` describes (None if it can), decided from
    the description and the checkpoint's config alone: no env is built, no weights are read.
    A remote policy is not checked here (it would open a connection)."""
    if is_remote(check_policy(policy)):
        return None
    if policy in PRIVILEGED and not description.expert:
        return (f"{description.task} has no scripted expert; evaluate random, hold or your own policy "
                "(e.g. remote:ws://HOST:PORT) on it")
    if policy not in RECIPES:
        return None
    try:
        check_fits(checkpoint_dir(policy, description, checkpoint), policy, description.robot)
    except UserError as exc:
        return str(exc)
    return None


def make_policy(name: str, target, checkpoint: str | None = None, args: dict[str, Any] | None = None):
    """Build a policy for `target`: an EnvDescription (all a factory needs), or a live env
    (its description is used; privileged policies also get the env itself)."""
    check_checkpoint(name, checkpoint)
    check_policy_args(name, args or {})
    args = args or {}
    factory = _load(_factory(name))  # checks the name (a remote one's URL too)
    env = None if isinstance(target, EnvDescription) else target
    description = target if env is None else env.unwrapped.description
    if name in PRIVILEGED:
        if env is None:
            raise UserError(f"policy {name!r} cannot be built from a description: {PRIVILEGED[name]}")
        return factory(env.unwrapped, **args)
    if is_remote(name):
        return factory(description, name.removeprefix(REMOTE_PREFIX), **args)
    if name in RECIPES:
        return factory(description, checkpoint_dir(name, description, checkpoint), **args)
    return factory(description, **args)


def recipe_class(policy: str):
    if policy not in RECIPES:
        raise UserError(f"{policy!r} is not a trainable policy; choose from: {', '.join(sorted(RECIPES))}")
    return _load(RECIPES[policy][0])
