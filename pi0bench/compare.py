"""`pi0bench compare`: several policies on several tasks, on identical initial states.

Each (policy, task) cell is an ordinary `eval` run under OUT/cells/POLICY-TASK, so a cell
resumes exactly like `eval` does and can be opened on its own. Episode i of a task starts from
the same seed for every policy (the seed depends only on task, base seed and i). A policy
that cannot drive a task's robot (no checkpoint for that task, one trained on another robot,
or `scripted` on a robosuite task, which has no expert) is reported as n/a and not run; that is
decided from the task's env description and the checkpoint's config, without building either.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from pi0bench.errors import UserError
from pi0bench.evaluate import EvalConfig, evaluate
from pi0bench.registry import PRIVILEGED, RECIPES, check_policy, check_task, describe_env, is_remote, unfit_reason
from pi0bench.compare_store import CONFIG_FILE
from pi0bench.store import atomic_write_text, cell_dir, code_revision

@dataclass(frozen=True)
class CompareConfig:
    policies: tuple[str, ...]
    tasks: tuple[str, ...]
    out: Path
    episodes: int = 10
    seed: int = 0
    workers: int = 1
    image_size: int = 128
    timeout_s: float | None = 30.0
    videos: int = 0
    backend: str = "local"
    address: str | None = None
    shared_policy: bool = False  # each learned cell's workers share one batching policy
    max_batch: int | None = None
    device: str | None = None  # where the learned cells' models run (None: the CPU, unrecorded)

    def to_dict(self) -> dict:
        return {**asdict(self), "policies": list(self.policies), "tasks": list(self.tasks), "out": str(self.out)}


def parse_names(text: str | None, known: dict, kind: str) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b'); 'all' or nothing -> every known name (sorted)."""
    if not text or text.strip() == "all":
        return tuple(sorted(known))
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    check = check_policy if kind == "policy" else check_task
    for name in names:
        check(name)
    return names


def shareable(policy: str) -> bool:
    """Whether --shared-policy applies to a cell (privileged and remote policies run as usual)."""
    return policy not in PRIVILEGED and not is_remote(policy)


def _device_args(device: str | None, policy: str) -> tuple[tuple[str, str], ...]:
    """A learned cell's `device` policy option (other policies run no model of their own)."""
    return (("device", device),) if device and policy in RECIPES else ()


def compare(config: CompareConfig, console: Console | None = None) -> dict:
    """Run every missing episode of every cell that fits, then write the comparison report."""
    from pi0bench.compare_report import write_comparison

    console = console or Console(stderr=True)
    if config.episodes < 1 or config.workers < 1:
        raise UserError("--episodes and --workers must be at least 1")
    if config.device is not None:  # before any cell runs
        from pi0bench.policies.device import torch_device

        torch_device(config.device)
    code_revision()  # pinned before this command writes anything into the tree
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CONFIG_FILE, json.dumps(config.to_dict(), indent=2))
    not_applicable = []
    for task in config.tasks:
        description = describe_env(task, cameras=())
        for policy in config.policies:
            reason = unfit_reason(policy, description)
            if reason:
                console.print(f"[yellow]{policy} on {task}: n/a[/] ({reason})")
                not_applicable.append({"policy": policy, "task": task, "reason": reason})
                continue
            evaluate(EvalConfig(policy=policy, task=task, episodes=config.episodes, seed=config.seed,
                                workers=config.workers, out=cell_dir(out, policy, task),
                                videos=config.videos, image_size=config.image_size,
                                timeout_s=config.timeout_s, backend=config.backend,
                                address=config.address, max_batch=config.max_batch,
                                shared_policy=config.shared_policy and shareable(policy),
                                policy_args=_device_args(config.device, policy)), console=console)
    atomic_write_text(out / "not_applicable.json", json.dumps(not_applicable, indent=2))
    return write_comparison(out)
