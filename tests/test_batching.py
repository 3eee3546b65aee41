"""One description of an env, policies built from it, and one model answering many episodes:
`EnvDescription`, `sibling`, `act_batch` (batched vs alone, fixed rows), the batcher, the
server's batching and `eval --shared-policy`, on the committed default checkpoints."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pi0bench import checkpoint as checkpoint_module
from pi0bench.batching import Batcher
from pi0bench.envs.task_env import TaskEnv
from pi0bench.errors import UserError
from pi0bench.evaluate import EvalConfig, evaluate
from pi0bench.layouts import to_wire
from pi0bench.policies.base import act_batch, sibling
from pi0bench.policies.remote import RemotePolicy
from pi0bench.registry import POLICIES, PRIVILEGED, describe_env, make_policy, unfit_reason
from pi0bench.store import RunStore
from pi0bench.tasks import TASKS
from serving import policy_server

LEARNED = ("act", "dp", "pi0", "octo", "openvla", "openvla-oft")
BATCH_TOLERANCE = 1e-5  # batched vs alone: float32 rounding of another batch size, nothing more


@pytest.fixture(scope="module")
def drawer():
    """Four observations of drawer_tidy (four initial states) and the env's description."""
    env = TaskEnv("drawer_tidy", image_size=64)
    observations = [env.reset(seed=s)[0] for s in range(1, 5)]
    description = env.description
    env.close()
    return description, observations


def _play(policies, observations, steps: int, rows=None, batched=True) -> list[list[np.ndarray]]:
    """Each policy's chunks over `steps` calls on its (fixed) observation."""
    out = [[] for _ in policies]
    for _ in range(steps):
        chunks = act_batch(policies, observations, rows) if batched else [p.act(o) for p, o in zip(policies, observations)]
        for k, chunk in enumerate(chunks):
            out[k].append(chunk)
    return out


# -- the description -------------------------------------------------------------------
@pytest.mark.parametrize("task", sorted(TASKS))
def test_the_description_is_what_the_env_exposes_and_needs_no_env(task, monkeypatch):
    env = TaskEnv(task, image_size=48)
    built = env.description
    env.close()
    monkeypatch.setattr(TaskEnv, "__init__", lambda *a, **k: (_ for _ in ()).throw(AssertionError("env built")))
    described = describe_env(task, image_size=48)
    assert described == built
    assert described.task == task and described.max_steps > 0 and described.stages
    assert described.action_space.shape == (described.action_dim,)
    with pytest.raises(UserError, match="unknown camera 'nope'"):
        describe_env(task, cameras=("nope",))


@pytest.mark.parametrize("policy", sorted(set(POLICIES) - set(PRIVILEGED)))
def test_every_policy_is_built_from_a_description_alone(policy, drawer):
    description, observations = drawer
    built = make_policy(policy, description)
    built.reset("drawer_tidy", 1)
    chunk = np.asarray(built.act(observations[0]))
    assert chunk.shape[-1] == description.action_dim and np.isfinite(chunk).all()


def test_a_privileged_policy_needs_the_env_and_says_so(drawer):
    with pytest.raises(UserError, match="cannot be built from a description: it reads the simulator's privileged state"):
        make_policy("scripted", drawer[0])


def test_the_fit_decision_reads_no_weights(monkeypatch, drawer):
    monkeypatch.setattr(checkpoint_module, "load_weights",
                        lambda *a: (_ for _ in ()).throw(AssertionError("weights read")))
    for policy in LEARNED:
        assert unfit_reason(policy, drawer[0]) is None, policy
    reason = unfit_reason("act", drawer[0], checkpoint=str(checkpoint_module.CHECKOUT_CHECKPOINTS / "pi0-small"))
    assert reason and "is a 'pi0' checkpoint, not a 'act' one" in reason
    assert "trained on" in unfit_reason("dp", describe_env("towel_fold"),
                                        checkpoint=str(checkpoint_module.CHECKOUT_CHECKPOINTS / "dp-small-drawer_tidy"))


# -- batched calls ------------------------------------------------------------------------
@pytest.mark.parametrize("policy", LEARNED)
def test_batched_calls_agree_with_lone_ones(policy, drawer):
    """Three siblings answered together give each episode what it gets alone (its own noise,
    history and queue), up to float32 rounding of another batch size; greedy OpenVLA tokens
    agree exactly."""
    description, observations = drawer
    lone = [make_policy(policy, description) for _ in range(3)]
    template = make_policy(policy, description)
    twins = [sibling(template) for _ in range(3)]
    for k in range(3):
        lone[k].reset("drawer_tidy", 10 + k)
        twins[k].reset("drawer_tidy", 10 + k)
    alone = _play(lone, observations[:3], steps=3, batched=False)
    together = _play(twins, observations[:3], steps=3)
    gap = max(float(np.abs(a - b).max()) for rows_a, rows_b in zip(alone, together) for a, b in zip(rows_a, rows_b))
    assert gap <= (0.0 if policy == "openvla" else BATCH_TOLERANCE)


@pytest.mark.parametrize("policy", LEARNED)
def test_at_fixed_rows_a_call_does_not_depend_on_its_company(policy, drawer):
    """What makes a shared-policy run replay exactly: at a fixed batch size an episode's chunks
    are bit for bit the same whichever other episodes share its forward passes, in any slot."""
    description, observations = drawer
    template = make_policy(policy, description)

    def chunks_of_episode_0(order: list[int]) -> list[np.ndarray]:
        twins = [sibling(template) for _ in order]
        for twin, k in zip(twins, order):
            twin.reset("drawer_tidy", 10 + k)
        return _play(twins, [observations[k] for k in order], steps=3, rows=4)[order.index(0)]

    full, shuffled, alone = chunks_of_episode_0([0, 1, 2, 3]), chunks_of_episode_0([2, 0]), chunks_of_episode_0([0])
    assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(full, shuffled, alone))


def test_siblings_keep_their_own_episode_state(drawer):
    """Interleaved siblings (ACT with temporal ensembling, DP's window and queue) act exactly
    as separate instances do: `reset` rebinds every piece of episode state."""
    description, observations = drawer
    for policy, args in (("act", {"temporal_ensemble": 0.01}), ("dp", {})):
        template = make_policy(policy, description, args=args)
        a, b = sibling(template), sibling(template)
        a.reset("drawer_tidy", 1)
        b.reset("drawer_tidy", 2)
        interleaved = [(a.act(observations[0]), b.act(observations[1])) for _ in range(4)]
        for k, (seed, obs) in enumerate(((1, observations[0]), (2, observations[1]))):
            separate = make_policy(policy, description, args=args)
            separate.reset("drawer_tidy", seed)
            assert all(np.array_equal(separate.act(obs), pair[k]) for pair in interleaved), policy


# -- the batcher and the server -------------------------------------------------------------
class _Echo:
    """A policy whose batched call records its batch sizes; one of them can fail."""

    execute_steps = None
    metadata = {"name": "echo", "version": "0", "checkpoint": ""}
    model = object()
    sizes: list[int] = []

    def reset(self, task, seed):
        pass

    def act(self, obs):
        return type(self).act_batch([self], [obs])[0]

    @classmethod
    def act_batch(cls, policies, observations, rows=None):
        cls.sizes.append(len(policies))
        if any(o.get("fail") for o in observations):
            raise RuntimeError("boom")
        time.sleep(0.05)
        return [np.full((2, 3), o["value"], np.float32) for o in observations]


def test_the_batcher_answers_calls_that_arrive_together_in_one_pass():
    _Echo.sizes = []
    batcher = Batcher(max_batch=4, window_ms=200.0, clients=lambda: 4)
    try:
        futures = [batcher.submit(_Echo(), {"value": k}) for k in range(4)]
        results = [f.result(timeout=10) for f in futures]
        assert [float(r[0][0, 0]) for r in results] == [0.0, 1.0, 2.0, 3.0]
        assert _Echo.sizes == [4] and batcher.batch_sizes == {4: 1}
        failing = [batcher.submit(_Echo(), {"value": 0, "fail": k == 1}) for k in range(2)]
        for future in failing:  # one failure fails its whole batch, with the real error
            with pytest.raises(RuntimeError, match="boom"):
                future.result(timeout=10)
    finally:
        batcher.close()


def test_a_lone_client_is_answered_without_waiting_out_the_window():
    batcher = Batcher(max_batch=8, window_ms=5000.0, clients=lambda: 1)
    try:
        start = time.perf_counter()
        batcher.submit(_Echo(), {"value": 1}).result(timeout=10)
        assert time.perf_counter() - start < 2.5  # the 5 s window was not waited out
    finally:
        batcher.close()


def test_the_server_batches_concurrent_clients(drawer):
    description, observations = drawer
    with policy_server(policy="act", task="drawer_tidy", image_size=64, max_batch=4,
                       batch_window_ms=200.0) as (url, server):
        clients = [RemotePolicy(description, url) for _ in range(4)]
        replies: list = [None] * 4
        barrier = threading.Barrier(4)

        def ask(k: int) -> None:
            clients[k].reset("drawer_tidy", k)
            barrier.wait()
            replies[k] = clients[k].act(observations[k])

        threads = [threading.Thread(target=ask, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for client in clients:
            client.close()
        assert max(server.batcher.batch_sizes) > 1, server.batcher.batch_sizes
    local = make_policy("act", description)
    for k in range(4):
        assert np.abs(replies[k] - local.act(observations[k])).max() <= BATCH_TOLERANCE


def test_an_openpi_style_lone_call_still_works(drawer):
    description, observations = drawer
    with policy_server(policy="hold", task="drawer_tidy", image_size=64) as (url, server):
        from websockets.sync.client import connect

        from pi0bench import wire

        with connect(url) as ws:
            ws.recv(timeout=30)
            ws.send(wire.packb(to_wire(observations[0], "native")))
            reply = wire.unpackb(ws.recv(timeout=30))
        assert reply["actions"].shape == (20, 8) and reply["policy_timing"]["batch_size"] == 1


# -- eval --shared-policy ------------------------------------------------------------------
def _shas(out, **config) -> list[str]:
    evaluate(EvalConfig(task="drawer_tidy", episodes=2, image_size=64, out=out, **config))
    episodes = RunStore(out).load().sort_values("episode")
    assert (episodes["error"] == "").all(), episodes["error"].tolist()
    return episodes["final_state_sha"].tolist()


def test_a_shared_policy_run_equals_the_unshared_one_at_batch_one(tmp_path):
    from pi0bench.checkpoint import resolve, weights_digest

    plain = _shas(tmp_path / "plain", policy="act")
    assert _shas(tmp_path / "shared", policy="act", workers=2, shared_policy=True, max_batch=1) == plain
    weights = weights_digest(resolve(None, "act-small-drawer_tidy", "act"))
    for run in ("plain", "shared"):  # the served episodes name the server's weights too
        assert set(RunStore(tmp_path / run).load()["checkpoint_sha"]) == {weights}


@pytest.mark.slow
def test_a_batched_shared_policy_run_replays_whatever_the_worker_count(tmp_path):
    one = _shas(tmp_path / "one", policy="act", workers=1, shared_policy=True, max_batch=2)
    two = _shas(tmp_path / "two", policy="act", workers=2, shared_policy=True)  # max_batch = workers = 2
    assert one == two
    with pytest.raises(UserError, match="batch_rows=2"):  # an unbatched run is another run
        evaluate(EvalConfig(policy="act", task="drawer_tidy", episodes=2, image_size=64, out=tmp_path / "two"))


@pytest.mark.slow
def test_policies_without_native_batching_replay_exactly_when_shared(tmp_path):
    assert _shas(tmp_path / "shared", policy="random", workers=2, shared_policy=True) == \
        _shas(tmp_path / "plain", policy="random")


@pytest.mark.parametrize("config, message", [
    ({"policy": "scripted"}, "cannot share 'scripted': it reads the simulator's privileged state"),
    ({"policy": "act", "backend": "ray"}, "use --backend local"),
    ({"policy": "act", "max_batch": 0}, "--max-batch must be at least 1"),
])
def test_shared_policy_refuses_what_it_cannot_do(config, message):
    with pytest.raises(UserError, match=message):
        EvalConfig(task="drawer_tidy", shared_policy=True, **config).validate()
