"""Test helpers: a pi0bench policy server on a free port in a background thread, and
small hand-written websocket servers that misbehave on purpose."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager

from pi0bench.serve import ServeConfig, loop_thread, serve_in_background


@contextmanager
def policy_server(**config):
    """A real `PolicyServer` on 127.0.0.1 and a free port; yields (url, server)."""
    with serve_in_background(ServeConfig(port=0, **config)) as served:
        yield served


@contextmanager
def scripted_server(handler):
    """A bare websocket server whose connections `handler(connection)` answers."""
    from websockets.asyncio.server import serve

    async def run(stop, on_ready):
        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            on_ready(server.sockets[0].getsockname()[1])
            await stop

    with loop_thread(run) as port:
        yield f"ws://127.0.0.1:{port}"


def spawn_server(*args: str) -> tuple[subprocess.Popen, str]:
    """`pi0bench serve ... --port 0` as a process; returns it and the URL it announced."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pi0bench.cli", "serve", "--port", "0", *args],
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stderr.readline()
    if "serving" not in line:
        proc.kill()
        raise AssertionError(f"server did not start: {line}{proc.stderr.read()}")
    return proc, line.split(" on ")[1].split(" ")[0]
