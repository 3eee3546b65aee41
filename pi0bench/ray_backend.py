"""The same per-episode work units on a Ray cluster (`--backend ray`).

Each Ray actor owns one env and one policy, like a local worker process, and plays whole
episodes; episode seeds depend only on the episode index, so the records are the ones the
local pool produces. Ray is an optional extra (`pip install 'pi0bench[ray]'`).
"""

from __future__ import annotations

from collections.abc import Callable

from pi0bench.errors import UserError


class _EpisodeActor:
    """A Ray actor around a runner (workers.EpisodeRunner, passed in by the caller so this
    module never imports back up). A failure to build the env or policy is kept and raised by
    every episode, so the caller sees the real error."""

    def __init__(self, build: Callable[[], object]):
        self.runner, self.error = None, None
        try:
            self.runner = build()
        except Exception as exc:  # noqa: BLE001 - handed back with each episode
            self.error = exc

    def run(self, episode: int) -> dict:
        if self.error is not None:
            raise self.error
        return self.runner.run(episode).to_dict()


def run_on_ray(build: Callable[[], object], episodes: list[int], workers: int, on_record: Callable[[dict], None],
               address: str | None = None) -> None:
    """Play `episodes` on `workers` actors of the cluster at `address` (a local Ray instance
    when None), each holding the runner `build()` makes (picklable: it travels to the
    actors), handing each record to `on_record` as it arrives."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install 'pi0bench[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        options = {"address": address} if address else {"num_cpus": workers}
        try:
            ray.init(include_dashboard=False, log_to_driver=False, **options)
        except ConnectionError as exc:
            raise UserError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    try:
        actor = ray.remote(num_cpus=1)(_EpisodeActor)
        pool = ActorPool([actor.remote(build) for _ in range(min(workers, len(episodes)))])
        for record in pool.map_unordered(lambda a, episode: a.run.remote(episode), episodes):
            on_record(record)
    finally:
        if started_here:
            ray.shutdown()
