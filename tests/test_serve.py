"""`pi0bench serve` and the `remote:` policy over real sockets: the openpi wire format, the
three observation layouts, errors that keep the server serving, the API key, a stalled client,
SIGTERM, and a remote evaluation that replays a local one exactly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from pi0bench import wire
from pi0bench.errors import UserError
from pi0bench.evaluate import EvalConfig, evaluate
from pi0bench.envs.task_env import TaskEnv
from pi0bench.layouts import to_wire
from pi0bench.policies.remote import RemotePolicy, RemotePolicyError
from pi0bench.registry import make_policy
from pi0bench.serve import ServeConfig
from serving import policy_server, scripted_server, spawn_server

SAME = ["episode_seed", "success", "score", "points", "stages", "steps", "sim_seconds", "error"]


def _observation(task: str, size: int = 32) -> dict:
    env = TaskEnv(task, image_size=size)
    obs, _ = env.reset(seed=3)
    env.close()
    return obs


def _ask(ws, message) -> object:
    ws.send(message if isinstance(message, (bytes, str)) else wire.packb(message))
    reply = ws.recv(timeout=30)
    return reply if isinstance(reply, str) else wire.unpackb(reply)


# -- wire format -------------------------------------------------------------------------
def test_wire_round_trip_and_refusals():
    message = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.int64(7), "p": "fold",
               "nested": {"img": np.zeros((2, 2, 3), np.uint8)}}
    back = wire.unpackb(wire.packb(message))
    assert back["a"].dtype == np.float32 and np.array_equal(back["a"], message["a"])
    assert back["b"] == 7 and back["p"] == "fold" and back["nested"]["img"].shape == (2, 2, 3)
    with pytest.raises(wire.WireError, match="refused"):
        wire.packb({"x": np.array([object()])})
    forged = {b"__ndarray__": True, b"data": b"", b"dtype": "|O", b"shape": [0]}
    with pytest.raises(wire.WireError, match="refused"):
        wire.unpackb(wire.packb({"x": forged}))
    short = {b"__ndarray__": True, b"data": b"\x00" * 4, b"dtype": "<f4", b"shape": [3]}
    with pytest.raises(wire.WireError, match="does not hold"):
        wire.unpackb(wire.packb({"x": short}))
    with pytest.raises(wire.WireError, match="not a msgpack"):
        wire.unpackb(b"\xc1\xc1 not msgpack")


# -- the server ----------------------------------------------------------------------------
def test_metadata_first_then_actions_for_every_layout():
    drawer, towel = _observation("drawer_tidy"), _observation("towel_fold")
    with policy_server(policy="hold", task="drawer_tidy") as (url, _):
        with connect(url) as ws:
            meta = wire.unpackb(ws.recv(timeout=30))
            assert meta["server"] == "pi0bench" and meta["pi0bench"]["action_dim"] == 8
            for layout in ("native", "droid"):
                reply = _ask(ws, to_wire(drawer, layout))
                assert reply["actions"].dtype == np.float32 and reply["actions"].shape[1] == 8
                assert "infer_ms" in reply["server_timing"]
                np.testing.assert_allclose(reply["actions"][0], drawer["state"], atol=1e-6)
    with policy_server(policy="hold", task="towel_fold") as (url, _):
        with connect(url) as ws:
            ws.recv(timeout=30)
            aloha = to_wire(towel, "aloha")
            assert aloha["images"]["cam_high"].shape == (3, 32, 32)  # CHW, as openpi sends
            reply = _ask(ws, aloha)
            np.testing.assert_array_equal(reply["actions"][0], towel["state"])


def test_bad_messages_get_a_text_error_and_the_connection_keeps_serving():
    obs = _observation("drawer_tidy")
    good = to_wire(obs, "native")
    with policy_server(policy="hold", task="drawer_tidy", max_message_mb=0.05) as (url, _):
        with connect(url, max_size=None) as ws:
            ws.recv(timeout=30)
            bad = {
                "garbage bytes": b"\xc1 definitely not msgpack",
                "a text frame": "hello",
                "too big": wire.packb({**good, "pad": np.zeros(100_000, np.uint8)}),
                "wrong state size": wire.packb({**good, "state": np.zeros(5, np.float32)}),
                "missing camera": wire.packb({**good, "images": {"base": good["images"]["base"]}}),
                "wrong image shape": wire.packb({**good, "images": {**good["images"], "wrist": np.zeros((4, 4), np.uint8)}}),
                "no layout": wire.packb({"joints": [1, 2]}),
                "not a map": wire.packb([1, 2, 3]),
            }
            for what, message in bad.items():
                reply = _ask(ws, message)
                assert isinstance(reply, str) and reply.startswith("error: bad request"), (what, reply)
            assert _ask(ws, good)["actions"].shape == (20, 8)  # still serving this client


def test_api_key_refuses_wrong_or_missing_keys(monkeypatch):
    with policy_server(policy="hold", task="drawer_tidy", api_key="s3cret") as (url, _):
        for headers in (None, {"Authorization": "Api-Key wrong"}):
            with pytest.raises(InvalidStatus) as refused:
                connect(url, additional_headers=headers)
            assert refused.value.response.status_code == 401
        with connect(url, additional_headers={"Authorization": "Api-Key s3cret"}) as ws:
            assert wire.unpackb(ws.recv(timeout=30))["server"] == "pi0bench"
        env = TaskEnv("drawer_tidy", cameras=())
        monkeypatch.delenv("PI0BENCH_API_KEY", raising=False)
        with pytest.raises(UserError, match="HTTP 401.*API key"):
            RemotePolicy(env.description, url)
        monkeypatch.setenv("PI0BENCH_API_KEY", "s3cret")
        RemotePolicy(env.description, url).close()
        env.close()


def test_a_stalled_client_does_not_block_others():
    obs = to_wire(_observation("drawer_tidy"), "native")
    with policy_server(policy="hold", task="drawer_tidy") as (url, _):
        port = int(url.rsplit(":", 1)[1])
        half_handshake = socket.create_connection(("127.0.0.1", port))
        half_handshake.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never finishes it
        idle = connect(url, legacy=True)  # connected, then silent
        idle.recv(timeout=30)
        half_frame = connect(url, legacy=True)
        half_frame.recv(timeout=30)
        half_frame.socket.sendall(b"\x82\xfe\x10\x00")  # a binary frame header promising 4 KiB, no body
        start = time.perf_counter()
        with connect(url) as ws:
            ws.recv(timeout=30)
            assert _ask(ws, obs)["actions"].shape == (20, 8)
        assert time.perf_counter() - start < 20
        for conn in (idle, half_frame):
            conn.close()
        half_handshake.close()


def test_cli_server_binds_localhost_and_stops_cleanly_on_sigterm():
    proc, url = spawn_server("--policy", "hold", "--task", "drawer_tidy")
    try:
        assert url.startswith("ws://127.0.0.1:")
        ws = connect(url, legacy=True)
        ws.recv(timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "server stopped" in proc.stderr.read()
        with pytest.raises(Exception):
            ws.recv(timeout=5)  # the server closed the connection on its way out
    finally:
        proc.kill()


def test_serve_rejects_bad_input_in_one_line():
    for kwargs, pattern in (({"policy": "scripted"}, "cannot be served"),
                            ({"policy": "nope"}, "unknown policy"),
                            ({"policy": "hold", "task": "nope"}, "unknown task"),
                            ({"policy": "hold", "port": 70000}, "--port")):
        with pytest.raises(UserError, match=pattern):
            ServeConfig(**kwargs).validate()
    result = subprocess.run([sys.executable, "-m", "pi0bench.cli", "serve", "--policy", "scripted"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1


# -- the remote policy ---------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["random", "act"])
def test_remote_evaluation_replays_the_local_one_exactly(tmp_path, policy):
    local = evaluate(EvalConfig(policy=policy, task="drawer_tidy", episodes=2, out=tmp_path / "local"))
    with policy_server(policy=policy, task="drawer_tidy") as (url, _):
        remote = evaluate(EvalConfig(policy=f"remote:{url}", task="drawer_tidy", episodes=2,
                                     out=tmp_path / "remote"))
    a = pd.read_parquet(tmp_path / "local" / "episodes")
    b = pd.read_parquet(tmp_path / "remote" / "episodes")
    pd.testing.assert_frame_equal(a[SAME], b[SAME])
    assert local["cells"][0]["mean_score"] == remote["cells"][0]["mean_score"]
    assert (b["latency_mean_ms"] > 0).all()


def test_a_perturbed_remote_run_replays_the_local_one(tmp_path):
    """Perturbations live in the env, so a remote policy sees exactly what a local one does."""
    from pi0bench.envs.perturb import Perturbation

    perturbed = (Perturbation("sensor", 3), Perturbation("language", 2))
    evaluate(EvalConfig(policy="act", task="drawer_tidy", episodes=1, image_size=64, out=tmp_path / "local",
                        perturbations=perturbed))
    with policy_server(policy="act", task="drawer_tidy") as (url, _):
        evaluate(EvalConfig(policy=f"remote:{url}", task="drawer_tidy", episodes=1, image_size=64,
                            out=tmp_path / "remote", perturbations=perturbed))
    a = pd.read_parquet(tmp_path / "local" / "episodes")
    b = pd.read_parquet(tmp_path / "remote" / "episodes")
    pd.testing.assert_frame_equal(a[SAME + ["final_state_sha"]], b[SAME + ["final_state_sha"]])


def test_remote_errors_are_clear():
    env = TaskEnv("drawer_tidy", cameras=())
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(UserError, match="no policy server at"):
        make_policy(f"remote:ws://127.0.0.1:{free}", env)
    with pytest.raises(UserError, match="remote:ws://HOST:PORT"):
        make_policy("remote:http://x", env)
    with policy_server(policy="hold", task="towel_fold") as (url, _):  # a 14-D robot
        with pytest.raises(UserError, match="needs 8-D"):
            make_policy(f"remote:{url}", env)

    async def not_openpi(connection):
        await connection.send("hello, I am a chat server")

    with scripted_server(not_openpi) as url:
        with pytest.raises(UserError, match="did not send openpi metadata"):
            make_policy(f"remote:{url}", env)
    env.close()


def test_remote_against_a_plain_openpi_server(monkeypatch):
    """No pi0bench metadata: the DROID layout is sent, a wrong action shape or a silent server
    is an episode error, and a dropped connection is re-opened."""
    seen = []

    async def openpi_like(connection):
        await connection.send(wire.packb({}))
        async for frame in connection:
            obs = wire.unpackb(frame)
            seen.append(sorted(obs))
            width = 8 if obs["prompt"] != "wrong" else 7
            if obs["prompt"] == "silent":
                continue
            await connection.send(wire.packb({"actions": np.zeros((4, width), np.float32)}))
            if obs["prompt"] == "drop":
                await connection.close()

    env = TaskEnv("drawer_tidy", image_size=32)
    obs, _ = env.reset(seed=0)
    with scripted_server(openpi_like) as url:
        policy = RemotePolicy(env.description, url, timeout_s=1.0)
        assert policy.layout == "droid" and policy.execute_steps is None
        policy.reset("drawer_tidy", 0)
        assert policy.act(obs).shape == (4, 8)
        assert "observation/joint_position" in seen[-1]
        assert policy.act({**obs, "prompt": "drop"}).shape == (4, 8)
        assert policy.act(obs).shape == (4, 8)  # on a new connection
        with pytest.raises(RemotePolicyError, match=r"shape \(4, 7\).*\[H, 8\]"):
            policy.act({**obs, "prompt": "wrong"})
        with pytest.raises(RemotePolicyError, match="no reply"):
            policy.act({**obs, "prompt": "silent"})
        assert policy.act(obs).shape == (4, 8)  # recovered after the timeout
        policy.close()
    env.close()
