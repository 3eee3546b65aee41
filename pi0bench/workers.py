"""Where episodes run: in this process, or in a pool of worker processes.

Each worker builds its own env, renderer and policy inside itself (spawned, never forked, so
no GL context or policy state crosses a process boundary) and plays whole episodes; the
parent only receives finished records. Results do not depend on the number of workers
because an episode's initial state and the policy's seed depend only on its index.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from pi0bench.envs.perturb import Perturbation
from pi0bench.realtime import Realtime
from pi0bench.rollout import EpisodeRecord, run_episode
from pi0bench.store import episode_stem
from pi0bench.wire import REMOTE_PREFIX


@dataclass(frozen=True)
class EpisodeJob:
    """Everything a worker needs to build its env and policy (plain data: it is pickled)."""

    task: str
    policy: str
    seed: int
    cameras: tuple[str, ...] | None
    image_size: int
    execute_steps: int | None
    timeout_s: float | None
    videos: int
    video_dir: str
    checkpoint: str | None = None
    policy_args: tuple[tuple[str, Any], ...] = ()
    realtime: Realtime | None = None
    perturbations: tuple[Perturbation, ...] = ()  # robustness: what is changed, and how much
    policy_url: str | None = None  # a shared policy's server: ask it instead of building the policy


# Every path (serial, process pool, Ray) runs policies on this many torch threads: a kernel's
# floating-point reduction order depends on the thread count (one DP call differed by 4.8e-7
# between 1 and 2 threads, the final qpos after 300 steps by 6.5e-4), so a run's episodes
# would otherwise depend on how many workers played them.
POLICY_THREADS = 1


def use_policy_threads() -> None:
    import torch

    torch.set_num_threads(POLICY_THREADS)


class EpisodeRunner:
    """An env + policy pair that plays episodes one after another."""

    def __init__(self, job: EpisodeJob):
        from pi0bench.registry import make_env, make_policy

        use_policy_threads()
        self.job = job
        self.env = make_env(job.task, cameras=job.cameras, image_size=job.image_size,
                            perturbations=job.perturbations)
        if job.policy_url:  # the shared policy already holds the checkpoint and options
            self.policy = make_policy(REMOTE_PREFIX + job.policy_url, self.env)
        else:
            self.policy = make_policy(job.policy, self.env, job.checkpoint, dict(job.policy_args))

    def run(self, episode: int) -> EpisodeRecord:
        job = self.job
        frames = [] if episode < job.videos else None
        record = run_episode(self.env, self.policy, task=job.task, policy_name=job.policy,
                             seed=job.seed, episode=episode, execute_steps=job.execute_steps,
                             timeout_s=job.timeout_s, frames=frames, realtime=job.realtime)
        if frames:
            from pi0bench.video import write_video

            stem = episode_stem(job.policy, job.task, job.seed, episode)
            write_video(Path(job.video_dir) / f"{stem}.mp4", frames, fps=self.env.robot.control_hz)
        return record

    def close(self) -> None:
        if hasattr(self.policy, "close"):  # e.g. a remote policy's connection
            self.policy.close()
        self.env.close()


class Runner(Protocol):
    """What plays work items one after another in one process (an env built once)."""

    def run(self, item: Any) -> Any: ...

    def close(self) -> None: ...


_RUNNER: Runner | None = None
_INIT_ERROR: Exception | None = None


def _init_worker(build: Callable[[], Runner]) -> None:
    """Build the worker's runner. A failure is kept and re-raised by each item, so the parent
    sees the real error (e.g. a one-line UserError), not a broken pool.

    OpenMP gets POLICY_THREADS before torch is imported (N workers each spinning one thread
    per core made a DP episode ~25x slower); EpisodeRunner sets torch's own count."""
    global _RUNNER, _INIT_ERROR
    os.environ["OMP_NUM_THREADS"] = str(POLICY_THREADS)
    try:
        _RUNNER = build()
    except Exception as exc:  # noqa: BLE001 - handed back to the parent unchanged
        _INIT_ERROR = exc


def _run_in_worker(item: Any) -> Any:
    if _INIT_ERROR is not None:
        raise _INIT_ERROR
    assert _RUNNER is not None, "worker not initialised"
    return _RUNNER.run(item)


def run_in_processes(build: Callable[[], Runner], items: list, workers: int,
                     on_result: Callable[[Any], None]) -> None:
    """Play `items` here (1 worker) or in a pool of `workers` spawned processes, each building
    one runner with `build` (picklable: a top-level class or a partial of one); every result
    goes to `on_result` as soon as it exists."""
    if not items:
        return
    if workers <= 1:
        runner = build()
        try:
            for item in items:
                on_result(runner.run(item))
        finally:
            runner.close()
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=context,
                             initializer=_init_worker, initargs=(build,)) as pool:
        for future in as_completed([pool.submit(_run_in_worker, item) for item in items]):
            on_result(future.result())


def run_episodes(job: EpisodeJob, episodes: Iterable[int], workers: int,
                 on_record: Callable[[dict], None], backend: str = "local", address: str | None = None) -> None:
    """Play `episodes`, handing each finished record to `on_record` as soon as it exists:
    here (1 worker), in a local process pool, or on Ray actors (`backend="ray"`)."""
    episodes = list(episodes)
    if not episodes:
        return
    if backend == "ray":
        from pi0bench.ray_backend import run_on_ray

        run_on_ray(partial(EpisodeRunner, job), episodes, workers, on_record, address)
        return
    run_in_processes(partial(EpisodeRunner, job), episodes, workers, lambda record: on_record(record.to_dict()))
