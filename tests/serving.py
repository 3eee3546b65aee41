"""Test helpers: a pi0bench policy server on a free port in a background thread, and
small hand-written websocket servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from typing import Awaitable, Callable

from pi0bench.serve import PolicyServer, ServeConfig


@contextmanager
def _loop_thread(start: Callable[[asyncio.Future, Callable[[int], None]], Awaitable[None]]):
    """Run `start(stop, on_ready)` on an event loop in a thread; yield the bound port."""
    loop = asyncio.new_event_loop()
    ready, bound, state = threading.Event(), {}, {}

    def on_ready(port: int) -> None:
        bound["port"] = port
        ready.set()

    def main() -> None:
        asyncio.set_event_loop(loop)
        state["stop"] = loop.create_future()
        loop.run_until_complete(start(state["stop"], on_ready))

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(60), "server did not start"
    try:
        yield bound["port"]
    finally:
        loop.call_soon_threadsafe(lambda: state["stop"].done() or state["stop"].set_result(None))
        thread.join(10)


@contextmanager
def policy_server(**config):
    """A real `PolicyServer` on 127.0.0.1 and a free port; yields (url, server)."""
    server = PolicyServer(ServeConfig(port=0, **config))
    try:
        with _loop_thread(server.run) as port:
            yield f"ws://127.0.0.1:{port}", server
    finally:
        server.close()


@contextmanager
def scripted_server(handler):
    """A bare websocket server whose connections `handler(connection)` answers."""
    from websockets.asyncio.server import serve

    async def run(stop, on_ready):
        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            on_ready(server.sockets[0].getsockname()[1])
            await stop

    with _loop_thread(run) as port:
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
