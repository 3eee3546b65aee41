"""`--backend ray`: the same per-episode work units on Ray actors give the same records as the
local process pool (a local Ray instance with 2 CPUs)."""

import pytest

from pi0bench.workers import EpisodeJob, run_episodes

ray = pytest.importorskip("ray", reason="Ray is the optional extra pi0bench[ray]; make test installs it")

TIMING = ("wall_seconds", "latency_mean_ms", "latency_p95_ms", "call_latencies_ms")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance (2 CPUs) for the module; the backend uses it as it finds it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _records(backend: str, workers: int, policy: str, perturbations=()) -> list[dict]:
    job = EpisodeJob(task="drawer_tidy", policy=policy, seed=3, cameras=(), image_size=32,
                     execute_steps=None, timeout_s=30.0, videos=0, video_dir="", perturbations=perturbations)
    records = []
    run_episodes(job, range(3), workers, records.append, backend=backend)
    return sorted(({k: v for k, v in r.items() if k not in TIMING} for r in records), key=lambda r: r["episode"])


def test_ray_actors_give_the_local_pool_s_records():
    local = _records("local", 2, "scripted")
    on_ray = _records("ray", 2, "scripted")
    assert on_ray == local and all(r["success"] for r in local)


def test_perturbed_episodes_on_ray_equal_the_local_pool_s():
    from pi0bench.envs.perturb import Perturbation

    perturbed = (Perturbation("dynamics", 3), Perturbation("distractors", 2))
    local = _records("local", 2, "scripted", perturbed)
    assert _records("ray", 2, "scripted", perturbed) == local
    assert [r["final_state_sha"] for r in local] != [r["final_state_sha"] for r in _records("local", 1, "scripted")]


def test_an_actor_that_cannot_build_its_policy_reports_the_real_error(tmp_path):
    from pi0bench.errors import UserError

    job = EpisodeJob(task="drawer_tidy", policy="pi0", seed=0, cameras=(), image_size=32, execute_steps=None,
                     timeout_s=30.0, videos=0, video_dir="", checkpoint=str(tmp_path / "none"))
    with pytest.raises(UserError, match="no pi0 checkpoint"):
        run_episodes(job, range(1), 1, lambda record: None, backend="ray")
