"""Interop with the official `openpi-client` package (it pins numpy<2, so it lives in its own
venv, .venv-openpi, made by `make openpi-client`): openpi's own client gets the same actions
from `pi0bench serve` as the policy gives in-process."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import numpy as np

from pi0bench.envs.task_env import TaskEnv
from pi0bench.layouts import from_wire
from pi0bench.registry import make_policy
from serving import spawn_server

ROOT = Path(__file__).resolve().parents[1]
CLIENT_PYTHON = ROOT / ".venv-openpi" / "bin" / "python"

CLIENT = """
import json, sys
import numpy as np
from openpi_client.websocket_client_policy import WebsocketClientPolicy

host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
obs = {"state": rng.uniform(-0.5, 0.5, 14).astype(np.float32),
       "images": {cam: rng.integers(0, 256, (3, 224, 224), dtype=np.uint8)
                  for cam in ("cam_high", "cam_left_wrist", "cam_right_wrist")},
       "prompt": "fold the towel"}
client = WebsocketClientPolicy(host, port)
reply = client.infer(obs)
np.savez(out, actions=reply["actions"], state=obs["state"],
         **{cam: image for cam, image in obs["images"].items()})
print(json.dumps({"metadata": client.get_server_metadata(), "timing": reply["server_timing"]}))
"""


def _client_python() -> Path:
    if not CLIENT_PYTHON.exists():
        subprocess.run(["make", "-s", "openpi-client"], cwd=ROOT, check=True)
    return CLIENT_PYTHON


def test_official_openpi_client_gets_the_policys_actions(tmp_path):
    python = _client_python()
    proc, url = spawn_server("--policy", "act", "--task", "towel_fold")
    try:
        host, port = url.removeprefix("ws://").split(":")
        result = subprocess.run([str(python), "-c", CLIENT, host, port, str(tmp_path / "reply.npz")],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["metadata"]["pi0bench"]["policy"] == "act" and "infer_ms" in info["timing"]

    reply = np.load(tmp_path / "reply.npz")
    env = TaskEnv("towel_fold", cameras=None)
    cams = ("cam_high", "cam_left_wrist", "cam_right_wrist")
    obs = from_wire({"state": reply["state"], "images": {c: reply[c] for c in cams}, "prompt": "fold the towel"},
                    robot="aloha", state_dim=14, cameras=cams, default_prompt="")
    policy = make_policy("act", env)
    policy.reset("towel_fold", 0)
    expected = policy.act(obs)
    env.close()
    assert reply["actions"].shape == expected.shape and reply["actions"].shape[1] == 14
    np.testing.assert_allclose(reply["actions"], expected, atol=1e-5)
