"""`pi0bench serve`: any registered policy behind openpi's websocket protocol.

On connect the server sends a metadata map; then each binary frame from the client is one
msgpack observation (ALOHA, DROID or native layout, see `layouts`) and each reply is
``{"actions": float32[H, D], "server_timing": {...}, "policy_timing": {...}}``. Anything
wrong with a message (not msgpack, too big, wrong shape, a policy crash) is answered with a
text frame naming the problem, as openpi does, and the connection keeps serving.

Safe to leave running: binds 127.0.0.1 unless told otherwise, optional API key (openpi's
``Authorization: Api-Key ...`` header; a wrong or missing key refuses the handshake with HTTP
401), msgpack only, a message-size limit, and a clean stop on SIGTERM. Each connection gets
its own policy instance (its own history, action queue and noise generator: a `sibling` of
one loaded model, so the weights are held once). Calls that arrive together are answered in
one batched forward pass (`pi0bench.batching`: a collection window of `--batch-window-ms`, at
most `--max-batch` calls, never waiting while no other client could send); decoding runs in
threads, so a slow or idle client never blocks another.

A pi0bench extension, announced in the metadata: the map ``{"pi0bench/reset": {"task": str,
"seed": int}}`` calls the connection's ``policy.reset`` and is answered ``{"reset": true}``.
It is what lets a remote evaluation replay a local one exactly; openpi clients never send it.
"""

from __future__ import annotations

import asyncio
import hmac
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from pi0bench import wire
from pi0bench.batching import Batcher
from pi0bench.errors import UserError
from pi0bench.layouts import LayoutError, from_wire
from pi0bench.policies.base import sibling
from pi0bench.wire import RESET_KEY

PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class ServeConfig:
    policy: str
    task: str = "towel_fold"  # which robot (and, for per-task checkpoints, which weights)
    checkpoint: str | None = None
    policy_args: tuple[tuple[str, Any], ...] = ()
    cameras: tuple[str, ...] | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_message_mb: float = 16.0
    max_batch: int = 8  # calls answered by one forward pass at most (1: one at a time)
    batch_window_ms: float = 5.0  # how long the first call of a batch waits for others
    fixed_rows: bool = False  # pad every forward pass to max_batch rows (shared-policy evals)
    image_size: int = 128  # of the observations it will be sent (part of the env description)

    def validate(self) -> None:
        from pi0bench.registry import PRIVILEGED, check_checkpoint, check_policy, check_policy_args, check_task

        check_task(self.task)
        if self.policy.startswith("remote:"):
            raise UserError("a remote: policy cannot be served again; serve the policy itself")
        check_policy(self.policy)
        if self.policy in PRIVILEGED:
            raise UserError(f"policy {self.policy!r} cannot be served: {PRIVILEGED[self.policy]}")
        check_checkpoint(self.policy, self.checkpoint)
        check_policy_args(self.policy, dict(self.policy_args))
        if not 0 <= self.port <= 65535:
            raise UserError(f"--port must be in 0..65535 (got {self.port})")
        if self.max_message_mb <= 0:
            raise UserError(f"--max-message-mb must be positive (got {self.max_message_mb})")
        if self.max_batch < 1 or self.batch_window_ms < 0:
            raise UserError(f"--max-batch must be at least 1 and --batch-window-ms at least 0 "
                            f"(got {self.max_batch}, {self.batch_window_ms})")

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * 1024 * 1024)


class PolicyServer:
    """Holds one loaded policy (built from the task's env description: no simulator) and
    answers connections, each with its own sibling of it."""

    def __init__(self, config: ServeConfig):
        from pi0bench.registry import describe_env, make_policy

        config.validate()
        self.config = config
        self.description = d = describe_env(config.task, cameras=config.cameras, image_size=config.image_size)
        # fails fast on a bad checkpoint, before the port is opened
        self._template = make_policy(config.policy, d, config.checkpoint, dict(config.policy_args))
        self.connections = 0
        self.batcher = Batcher(config.max_batch, config.batch_window_ms, clients=lambda: self.connections,
                               fixed_rows=config.fixed_rows)
        self.metadata = {
            **{k: v for k, v in self._template.metadata.items() if isinstance(v, (str, int, float, bool))},
            "server": "pi0bench",
            "pi0bench": {"protocol": PROTOCOL_VERSION, "policy": config.policy, "task": config.task,
                         "robot": d.robot, "action_dim": d.action_dim,
                         "control_hz": d.control_hz, "cameras": list(d.cameras),
                         "execute_steps": getattr(self._template, "execute_steps", None),
                         "layouts": ["native", "aloha", "droid"], "reset": True,
                         "max_message_bytes": config.max_message_bytes, "max_batch": config.max_batch},
        }

    def _parse(self, policy, frame: bytes | str) -> dict:
        """A frame's observation, or the reply to a reset (which it applies). Runs in a thread,
        so decoding stays off the event loop; a bad request raises WireError or LayoutError."""
        if isinstance(frame, str):
            raise LayoutError("send observations as binary msgpack frames, not text")
        if len(frame) > self.config.max_message_bytes:
            raise LayoutError(f"message of {len(frame)} bytes exceeds the server's limit of "
                              f"{self.config.max_message_bytes} (--max-message-mb)")
        message = wire.unpackb(frame)
        if isinstance(message, dict) and RESET_KEY in message:
            spec = message[RESET_KEY]
            if not (isinstance(spec, dict) and isinstance(spec.get("seed"), int)):
                raise LayoutError(f"{RESET_KEY} needs a map with an integer 'seed'")
            policy.reset(str(spec.get("task", self.config.task)), int(spec["seed"]))
            return {"reset": True}
        d = self.description
        return {"observation": from_wire(message, robot=d.robot, state_dim=d.state_dim, cameras=d.cameras,
                                         default_prompt=d.instruction)}

    async def _reply(self, policy, frame: bytes | str) -> dict:
        """The answer to one frame: its chunk comes from the batcher, with the forward pass's
        time and how many calls it answered."""
        from pi0bench.rollout import check_chunk

        request = await asyncio.to_thread(self._parse, policy, frame)
        if "observation" not in request:
            return request
        chunk, infer_ms, batch = await asyncio.wrap_future(self.batcher.submit(policy, request["observation"]))
        return {"actions": check_chunk(chunk, self.description.action_dim),
                "policy_timing": {"infer_ms": infer_ms, "batch_size": batch}}

    async def handle(self, connection) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._converse(connection)
        except ConnectionClosed:
            pass  # a client that goes away, even abruptly, is no error of the server's

    async def _converse(self, connection) -> None:
        policy = sibling(self._template)
        self.connections += 1
        try:
            await self._answer(connection, policy)
        finally:
            self.connections -= 1

    async def _answer(self, connection, policy) -> None:
        await connection.send(wire.packb(self.metadata))
        previous_total_ms = None
        async for frame in connection:
            started = time.perf_counter()
            try:
                reply = await self._reply(policy, frame)
            except (wire.WireError, LayoutError) as exc:
                await connection.send(f"error: bad request: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - a policy crash is reported, the server goes on
                await connection.send(f"error: policy {self.config.policy} failed: {type(exc).__name__}: {exc}")
                continue
            if "actions" in reply:
                reply["server_timing"] = dict(reply["policy_timing"])
                if previous_total_ms is not None:
                    reply["server_timing"]["prev_total_ms"] = previous_total_ms
            await connection.send(wire.packb(reply))
            if "actions" in reply:
                previous_total_ms = (time.perf_counter() - started) * 1000.0

    def check_request(self, connection, request):
        """Health check at /healthz; the API key, when one is set, before the handshake."""
        if request.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "OK\n")
        if self.config.api_key:
            given = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, f"Api-Key {self.config.api_key}".encode()):
                return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
        return None

    async def run(self, stop: asyncio.Future, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve until `stop` is done; open connections are closed with 1001 (going away).
        The transport refuses frames over 4x the message limit outright (close code 1009),
        so an oversized message is never held in memory beyond that."""
        from websockets.asyncio.server import serve

        async with serve(self.handle, self.config.host, self.config.port, compression=None,
                         max_size=4 * self.config.max_message_bytes,
                         process_request=self.check_request) as server:
            if on_ready:
                on_ready(server.sockets[0].getsockname()[1])
            await stop

    def close(self) -> None:
        self.batcher.close()


@contextmanager
def loop_thread(start: Callable[[asyncio.Future, Callable[[int], None]], Awaitable[None]]) -> Iterator[int]:
    """Run `start(stop, on_ready)` on an event loop in a thread of this process; yield the
    port it reports ready on, and stop it when the block ends."""
    loop = asyncio.new_event_loop()
    ready, bound, state = threading.Event(), {}, {}

    def on_ready(port: int) -> None:
        bound["port"] = port
        ready.set()

    def main() -> None:
        asyncio.set_event_loop(loop)
        state["stop"] = loop.create_future()
        try:
            loop.run_until_complete(start(state["stop"], on_ready))
        except Exception as exc:  # noqa: BLE001 - re-raised by the caller's thread
            state["error"] = exc
            ready.set()

    thread = threading.Thread(target=main, name="pi0bench-server", daemon=True)
    thread.start()
    if not ready.wait(60) or "error" in state:
        raise UserError(f"the policy server did not start: {state.get('error', 'no answer in 60 s')}")
    try:
        yield bound["port"]
    finally:
        loop.call_soon_threadsafe(lambda: state["stop"].done() or state["stop"].set_result(None))
        thread.join(10)


@contextmanager
def serve_in_background(config: ServeConfig) -> Iterator[tuple[str, PolicyServer]]:
    """A PolicyServer on a thread of this process (port 0: any free one) for the block;
    yields (its ws:// URL, the server)."""
    server = PolicyServer(config)
    try:
        with loop_thread(server.run) as port:
            yield f"ws://{config.host}:{port}", server
    finally:
        server.close()


def serve_forever(config: ServeConfig) -> None:
    """The CLI's server: runs until SIGTERM or SIGINT, then stops cleanly."""
    server = PolicyServer(config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))

        def ready(port: int) -> None:
            guard = "API key required" if config.api_key else "no API key"
            print(f"serving {config.policy} for {config.task} on ws://{config.host}:{port} ({guard}); "
                  "SIGTERM or Ctrl-C stops", file=sys.stderr, flush=True)

        await server.run(stop, ready)

    try:
        asyncio.run(main())
    except OSError as exc:
        raise UserError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}; "
                        "choose another --port") from None
    finally:
        server.close()
    print("server stopped", file=sys.stderr, flush=True)
