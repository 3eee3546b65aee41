"""`pi0bench eval`: run one policy on one task into a resumable run directory.

A real-time run (`--realtime`, see `pi0bench.realtime`) also plays the same episodes without latency
into RUN/baseline, so its report shows success with and without latency, paired by episode.

A shared-policy run (`--shared-policy`) holds the model once, in a policy server on a thread of
this process, and its workers ask it over the loopback: calls that arrive together are answered
in one forward pass of exactly `max_batch` rows, so episodes do not depend on timing. A row of a
B-row pass can differ from the same row alone by ~1e-7 (the kernels round differently at another
batch size), so for B > 1 the batch size is part of the run's identity ("batch_rows").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from pi0bench.errors import UserError
from pi0bench.envs.description import choose_cameras
from pi0bench.envs.perturb import Perturbation, check_perturbations
from pi0bench.realtime import Realtime
from pi0bench.registry import (check_checkpoint, check_policy, check_policy_args, check_task, make_task,
                               rtc_unfit_reason, task_family)
from pi0bench.store import RunStore, default_run_dir
from pi0bench.workers import EpisodeJob, run_episodes

SHARED_WINDOW_MS = 20.0  # how long a shared policy's first call waits for the other workers'


@dataclass(frozen=True)
class EvalConfig:
    policy: str
    task: str
    episodes: int = 10
    seed: int = 0
    workers: int = 1
    out: Path | None = None
    videos: int = 0
    execute_steps: int | None = None
    image_size: int = 128
    cameras: tuple[str, ...] | None = None
    timeout_s: float | None = 30.0
    overwrite: bool = False
    checkpoint: str | None = None
    policy_args: tuple[tuple[str, Any], ...] = ()  # keyword options of the policy's factory
    backend: str = "local"  # "local" (process pool) or "ray"; results are the same
    address: str | None = None  # Ray cluster address (None: start a local Ray instance)
    realtime: Realtime | None = None  # simulated time runs on while the policy thinks
    only_episodes: tuple[int, ...] | None = None  # play just these of 0..episodes-1 (fit check)
    perturbations: tuple[Perturbation, ...] = ()  # robustness axes and levels (envs/perturb.py)
    shared_policy: bool = False  # one model for all workers, answering them in batches
    max_batch: int | None = None  # rows of a shared policy's forward pass (default: --workers)

    @property
    def batch_rows(self) -> int | None:
        """The fixed batch size a shared policy computes at (None: one call at a time, which
        gives exactly the unshared episodes)."""
        rows = (self.max_batch or self.workers) if self.shared_policy else 1
        return rows if rows > 1 else None

    def validate(self) -> None:
        check_policy(self.policy)
        check_task(self.task)
        check_checkpoint(self.policy, self.checkpoint)
        check_policy_args(self.policy, dict(self.policy_args))
        if self.backend not in ("local", "ray"):
            raise UserError(f"unknown --backend {self.backend!r}; choose from: local, ray")
        for name, value, low in (("--episodes", self.episodes, 1), ("--workers", self.workers, 1),
                                 ("--image-size", self.image_size, 16), ("--videos", self.videos, 0)):
            if value < low:
                raise UserError(f"{name} must be at least {low} (got {value})")
        if self.realtime:
            self.realtime.validate()
            reason = rtc_unfit_reason(self.policy) if self.realtime.mode == "rtc" else None
            if reason:
                raise UserError(reason)
        if self.execute_steps is not None and self.execute_steps < 1:
            raise UserError(f"--execute-steps must be at least 1 (got {self.execute_steps})")
        if self.videos and self.cameras == ():
            raise UserError("--videos needs cameras to film; drop --cameras none")
        check_perturbations(self.perturbations)
        if self.shared_policy:
            self._check_shared()
        if self.perturbations and task_family(self.task):
            raise UserError(f"--perturb applies to the project's own tasks, not {self.task!r}")
        if self.cameras:  # before the run directory or any worker exists
            choose_cameras(make_task(self.task).make_robot(), self.cameras)

    def _check_shared(self) -> None:
        from pi0bench.registry import PRIVILEGED, is_remote

        if self.policy in PRIVILEGED or is_remote(self.policy):
            why = PRIVILEGED.get(self.policy, "it already runs elsewhere")
            raise UserError(f"--shared-policy cannot share {self.policy!r}: {why}")
        if self.backend != "local":
            raise UserError("--shared-policy serves its workers on this machine's loopback: use --backend local")
        if self.realtime and self.realtime.mode == "rtc":
            raise UserError("--shared-policy answers plain calls only; rtc inpainting needs the policy in the "
                            "worker: drop --shared-policy or use --realtime-mode naive or skip")
        if self.max_batch is not None and self.max_batch < 1:
            raise UserError(f"--max-batch must be at least 1 (got {self.max_batch})")

    @property
    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        plain = default_run_dir(self.policy, self.task, self.seed)
        suffix = "".join(f"-{p.axis}{p.level}" for p in self.perturbations)
        if self.realtime:
            suffix += f"-realtime-{self.realtime.label}"
        return plain.with_name(plain.name + suffix)

    def as_run_config(self) -> dict:
        return {"policy": self.policy, "task": self.task, "episodes": self.episodes,
                "seed": self.seed, "workers": self.workers, "execute_steps": self.execute_steps,
                "image_size": self.image_size,
                # None: the robot's default cameras; []: none at all (a blind run is another run)
                "cameras": None if self.cameras is None else list(self.cameras),
                "timeout_s": self.timeout_s, "videos": self.videos, "checkpoint": self.checkpoint,
                "policy_args": dict(self.policy_args) or None, "realtime": self.realtime.record() if self.realtime else None,
                **({"only_episodes": list(self.only_episodes)} if self.only_episodes is not None else {}),
                **({"perturbations": [str(p) for p in self.perturbations]} if self.perturbations else {}),
                **({"shared_policy": True, "batch_rows": self.batch_rows} if self.shared_policy else {})}


def evaluate(config: EvalConfig, console: Console | None = None, baseline: bool = True) -> dict:
    """Run the missing episodes of `config`, then write the summary and report. A real-time
    run first plays its no-latency `baseline` (unless the caller has its own, as a latency
    sweep does)."""
    from pi0bench.report import write_report

    config.validate()
    console = console or Console(stderr=True)
    if config.realtime and baseline:
        console.print("real-time run: first the same episodes without latency (baseline/)")
        evaluate(replace(config, realtime=None, out=config.run_dir / "baseline"), console)
    store = RunStore(config.run_dir)
    run = store.open(config.as_run_config(), overwrite=config.overwrite)
    wanted = range(config.episodes) if config.only_episodes is None else config.only_episodes
    pending = [i for i in wanted if not store.has(config.policy, config.task, config.seed, i)]
    done_before = len(wanted) - len(pending)
    if done_before:
        console.print(f"resuming {store.dir}: {done_before} of {len(wanted)} episodes on disk")

    job = EpisodeJob(task=config.task, policy=config.policy, seed=config.seed,
                     cameras=config.cameras, image_size=config.image_size,
                     execute_steps=config.execute_steps, timeout_s=config.timeout_s,
                     videos=config.videos, video_dir=str(store.dir / "videos"),
                     checkpoint=config.checkpoint, policy_args=config.policy_args,
                     realtime=config.realtime, perturbations=config.perturbations)
    successes = {"n": 0, "done": 0}
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("success {task.fields[succ]}"), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task_id = bar.add_task(f"{config.policy} on {config.task}", total=len(pending), succ="-")

        def on_record(record: dict) -> None:
            store.write(record)
            successes["n"] += bool(record["success"])
            successes["done"] += 1
            bar.update(task_id, advance=1, succ=f"{successes['n']}/{successes['done']}")
            if record["error"]:
                console.print(f"[yellow]episode {record['episode']} error:[/] {record['error'][:200]}")

        if config.shared_policy and pending:
            with shared_policy(config) as url:
                run_episodes(replace(job, policy_url=url), pending, config.workers, on_record)
        else:
            run_episodes(job, pending, config.workers, on_record, config.backend, config.address)
    return write_report(store.dir, run["config"], store.load())


@contextmanager
def shared_policy(config: EvalConfig) -> Iterator[str]:
    """The one policy a shared-policy run's workers ask (a batching server on a thread of
    this process, on POLICY_THREADS torch threads like every worker); yields its URL."""
    from pi0bench.serve import ServeConfig, serve_in_background
    from pi0bench.workers import use_policy_threads

    use_policy_threads()
    served = ServeConfig(policy=config.policy, task=config.task, checkpoint=config.checkpoint,
                         policy_args=config.policy_args, cameras=config.cameras, image_size=config.image_size,
                         port=0, max_batch=config.batch_rows or 1, batch_window_ms=SHARED_WINDOW_MS,
                         fixed_rows=True)
    with serve_in_background(served) as (url, _):
        yield url

