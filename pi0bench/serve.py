"""`pi0bench serve`: any registered policy behind openpi's websocket protocol.

On connect the server sends a metadata map; then each binary frame from the client is one
msgpack observation (ALOHA, DROID or native layout, see `layouts`) and each reply is
``{"actions": float32[H, D], "server_timing": {...}, "policy_timing": {...}}``. Anything
wrong with a message (not msgpack, too big, wrong shape, a policy crash) is answered with a
text frame naming the problem, as openpi does, and the connection keeps serving.

Safe to leave running: binds 127.0.0.1 unless told otherwise, optional API key (openpi's
``Authorization: Api-Key ...`` header; a wrong or missing key refuses the handshake with HTTP
401), msgpack only, a message-size limit, and a clean stop on SIGTERM. Each connection gets
its own policy instance (its own history, action queue and noise generator), built in a
thread, and inference runs in threads too, so a slow or idle client never blocks another.

A pi0bench extension, announced in the metadata: the map ``{"pi0bench/reset": {"task": str,
"seed": int}}`` calls the connection's ``policy.reset`` and is answered ``{"reset": true}``.
It is what lets a remote evaluation replay a local one exactly; openpi clients never send it.
"""

from __future__ import annotations

import asyncio
import hmac
import signal
import sys
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Callable

from pi0bench import wire
from pi0bench.errors import UserError
from pi0bench.layouts import LayoutError, from_wire
from pi0bench.wire import RESET_KEY

PROTOCOL_VERSION = 1
UNSERVABLE = {"scripted": "it reads the simulator's privileged state, which a server does not have"}


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

    def validate(self) -> None:
        from pi0bench.registry import check_checkpoint, check_policy, check_policy_args, check_task

        check_task(self.task)
        if self.policy.startswith("remote:"):
            raise UserError("a remote: policy cannot be served again; serve the policy itself")
        check_policy(self.policy)
        if self.policy in UNSERVABLE:
            raise UserError(f"policy {self.policy!r} cannot be served: {UNSERVABLE[self.policy]}")
        check_checkpoint(self.policy, self.checkpoint)
        check_policy_args(self.policy, dict(self.policy_args))
        if not 0 <= self.port <= 65535:
            raise UserError(f"--port must be in 0..65535 (got {self.port})")
        if self.max_message_mb <= 0:
            raise UserError(f"--max-message-mb must be positive (got {self.max_message_mb})")

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * 1024 * 1024)


class PolicyServer:
    """Holds the served env (built once: factories read its robot and action space) and
    answers connections."""

    def __init__(self, config: ServeConfig):
        from pi0bench.registry import make_env

        config.validate()
        self.config = config
        self.env = make_env(config.task, cameras=config.cameras)
        self._spare = self._new_policy()  # fails fast on a bad checkpoint; the first client gets it
        robot = self.env.robot
        self.metadata = {
            **{k: v for k, v in self._spare.metadata.items() if isinstance(v, (str, int, float, bool))},
            "server": "pi0bench",
            "pi0bench": {"protocol": PROTOCOL_VERSION, "policy": config.policy, "task": config.task,
                         "robot": robot.name, "action_dim": robot.action_dim,
                         "control_hz": robot.control_hz, "cameras": list(self.env.cameras),
                         "execute_steps": getattr(self._spare, "execute_steps", None),
                         "layouts": ["native", "aloha", "droid"], "reset": True,
                         "max_message_bytes": config.max_message_bytes},
        }

    def _new_policy(self):
        from pi0bench.registry import make_policy

        policy = make_policy(self.config.policy, self.env, self.config.checkpoint, dict(self.config.policy_args))
        policy.reset(self.config.task, 0)
        return policy

    def _take_policy(self):
        spare, self._spare = self._spare, None
        return spare if spare is not None else self._new_policy()

    def _reply(self, policy, frame: bytes | str) -> dict:
        """The answer to one frame. Runs in a thread, so decoding and inference stay off the
        event loop; a bad request raises WireError or LayoutError, anything else is the
        policy's failure."""
        from pi0bench.rollout import check_chunk

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
        obs = from_wire(message, robot=self.env.robot.name,
                        state_dim=self.env.observation_space["state"].shape[0],
                        cameras=self.env.cameras, default_prompt=self.env.task.instruction)
        start = time.perf_counter()
        chunk = check_chunk(policy.act(obs), self.env.robot.action_dim)
        return {"actions": chunk, "policy_timing": {"infer_ms": (time.perf_counter() - start) * 1000.0}}

    async def handle(self, connection) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._converse(connection)
        except ConnectionClosed:
            pass  # a client that goes away, even abruptly, is no error of the server's

    async def _converse(self, connection) -> None:
        policy = await asyncio.to_thread(self._take_policy)
        await connection.send(wire.packb(self.metadata))
        previous_total_ms = None
        async for frame in connection:
            started = time.perf_counter()
            try:
                reply = await asyncio.to_thread(self._reply, policy, frame)
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
        self.env.close()


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
