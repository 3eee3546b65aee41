"""The same command gives the same episodes whatever the number of workers, for every
learned policy family: compared on each episode's final simulator state (final_state_sha:
qpos, qvel and flex vertices, bit for bit), on the committed default checkpoints."""

import pytest
import torch

from pi0bench.evaluate import EvalConfig, evaluate
from pi0bench.store import RunStore
from pi0bench.workers import POLICY_THREADS, EpisodeJob, EpisodeRunner

FAMILIES = ("pi0", "act", "dp", "octo", "openvla", "openvla-oft")


def final_states(policy: str, workers: int, out, episodes: int = 2) -> list[str]:
    evaluate(EvalConfig(policy=policy, task="drawer_tidy", episodes=episodes, workers=workers, out=out,
                        image_size=64))
    episodes_df = RunStore(out).load().sort_values("episode")
    assert (episodes_df["error"] == "").all(), episodes_df["error"].tolist()
    return episodes_df["final_state_sha"].tolist()


def test_every_path_runs_policies_on_the_same_torch_threads():
    torch.set_num_threads(2)
    EpisodeRunner(EpisodeJob(task="drawer_tidy", policy="hold", seed=0, cameras=(), image_size=16,
                             execute_steps=None, timeout_s=None, videos=0, video_dir="")).close()
    assert torch.get_num_threads() == POLICY_THREADS


def test_act_one_and_two_workers_end_in_the_same_states(tmp_path):
    one = final_states("act", 1, tmp_path / "one")
    two = final_states("act", 2, tmp_path / "two")
    assert one == two and len(set(one)) == 2 and all(len(s) == 64 for s in one)


@pytest.mark.slow
@pytest.mark.parametrize("policy", FAMILIES)
def test_every_learned_family_is_independent_of_the_worker_count(policy, tmp_path):
    assert final_states(policy, 1, tmp_path / "one") == final_states(policy, 2, tmp_path / "two")
