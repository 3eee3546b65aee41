"""`remote:ws://HOST:PORT`: any openpi-protocol policy server, through the normal rollout loop.

This is how the real π0 is evaluated: run openpi's own server on a GPU machine and point
`pi0bench eval --policy remote:ws://gpu-host:8000` at it. Against a pi0bench server (its
metadata says so) observations travel in the native layout and each episode begins with a
reset carrying the episode seed, so a remote run replays a local one exactly; against any
other openpi server the robot's openpi layout is sent (ALOHA or DROID) and there is no reset.

A dropped connection is re-opened (and the last reset replayed) before the call fails; every
call has a timeout; the API key comes from PI0BENCH_API_KEY, never from the command line, so
it is not written into run.json.
"""

from __future__ import annotations

import os
import time

import numpy as np

from pi0bench import wire
from pi0bench.wire import REMOTE_PREFIX, RESET_KEY
from pi0bench.envs.description import EnvDescription
from pi0bench.errors import UserError
from pi0bench.layouts import LayoutError, check_layout, default_layout, to_wire

API_KEY_ENV = "PI0BENCH_API_KEY"


class RemotePolicyError(RuntimeError):
    """The server answered with an error or something that is not an action chunk."""


def check_url(name: str) -> str:
    url = name.removeprefix(REMOTE_PREFIX)
    if not url.startswith(("ws://", "wss://")) or len(url.split("://", 1)[1]) == 0:
        raise UserError(f"{name!r} is not remote:ws://HOST:PORT (e.g. remote:ws://127.0.0.1:8000)")
    return url


class RemotePolicy:
    def __init__(self, description: EnvDescription, url: str, timeout_s: float = 30.0, layout: str = "auto",
                 reconnects: int = 2):
        self.url = url
        self.timeout_s = float(timeout_s)
        self.reconnects = int(reconnects)
        self.robot = description.robot
        self.action_dim = description.action_dim
        self._ws = None
        self._last_reset: tuple[str, int] | None = None
        self.server_metadata = self._connect()
        ours = self.server_metadata.get("pi0bench")
        self.serves_pi0bench = isinstance(ours, dict)
        self.layout = ("native" if self.serves_pi0bench else default_layout(self.robot)) if layout == "auto" else layout
        try:
            check_layout(self.layout, self.robot)
        except LayoutError as exc:
            raise UserError(str(exc)) from None
        if self.serves_pi0bench and ours.get("action_dim") not in (None, self.action_dim):
            raise UserError(f"server at {url} serves a {ours.get('robot')} policy with {ours.get('action_dim')}-D "
                            f"actions; this task's robot ({self.robot}) needs {self.action_dim}-D")
        self.execute_steps = ours.get("execute_steps") if self.serves_pi0bench else None
        self.metadata = {"name": f"{REMOTE_PREFIX}{url}", "version": str(self.server_metadata.get("version", "")),
                         "checkpoint": str(self.server_metadata.get("checkpoint", "")) if self.serves_pi0bench else "",
                         "layout": self.layout}
        self.last_server_timing: dict = {}

    # -- connection ---------------------------------------------------------------------
    def _connect(self) -> dict:
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        key = os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Api-Key {key}"} if key else None
        try:
            self._ws = connect(self.url, open_timeout=self.timeout_s, compression=None, max_size=None,
                               additional_headers=headers, legacy=True)  # held across calls
        except InvalidStatus as exc:
            status = exc.response.status_code
            hint = f"wrong or missing API key; set {API_KEY_ENV}" if status == 401 else "not an openpi policy server?"
            raise UserError(f"policy server at {self.url} refused the connection (HTTP {status}): {hint}") from None
        except (OSError, TimeoutError) as exc:
            raise UserError(f"no policy server at {self.url} ({exc}); start one with "
                            "`pi0bench serve --policy P` or check the address") from None
        try:
            first = self._ws.recv(timeout=self.timeout_s)
            metadata = wire.unpackb(first) if isinstance(first, bytes) else None
        except (TimeoutError, wire.WireError):
            metadata = None
        if not isinstance(metadata, dict):
            self.close()
            raise UserError(f"{self.url} did not send openpi metadata first; is it an openpi policy server?")
        return metadata

    def _exchange(self, message: dict) -> dict:
        """Send one message and read its reply, re-opening a dropped connection."""
        from websockets.exceptions import ConnectionClosed

        payload = wire.packb(message)
        for attempt in range(self.reconnects + 1):
            try:
                if self._ws is None:
                    self._reopen()
                self._ws.send(payload)
                reply = self._ws.recv(timeout=self.timeout_s)
                break
            except TimeoutError:
                self.close()  # the late reply would answer the next call: start afresh
                raise RemotePolicyError(f"no reply from {self.url} within {self.timeout_s:g} s") from None
            except (ConnectionClosed, OSError, UserError) as exc:
                self.close()
                if attempt == self.reconnects:
                    raise RemotePolicyError(f"lost the connection to {self.url}: {exc}") from None
                time.sleep(0.2 * 2 ** attempt)
        if isinstance(reply, str):
            raise RemotePolicyError(f"server error: {reply}")
        try:
            decoded = wire.unpackb(reply)
        except wire.WireError as exc:
            raise RemotePolicyError(f"protocol mismatch: reply is not openpi msgpack ({exc})") from None
        if not isinstance(decoded, dict):
            raise RemotePolicyError(f"protocol mismatch: reply is a {type(decoded).__name__}, not a map")
        return decoded

    def _reopen(self) -> None:
        self._connect()
        if self._last_reset and self.serves_pi0bench:
            self._send_reset(*self._last_reset)

    def _send_reset(self, task: str, seed: int) -> None:
        reply = self._exchange({RESET_KEY: {"task": task, "seed": int(seed)}})
        if reply.get("reset") is not True:
            raise RemotePolicyError(f"protocol mismatch: reset answered with {sorted(reply)}")

    # -- policy contract ----------------------------------------------------------------
    def reset(self, task: str, seed: int) -> None:
        self._last_reset = (task, int(seed))
        if self.serves_pi0bench:
            self._send_reset(task, seed)

    def act(self, obs: dict) -> np.ndarray:
        reply = self._exchange(to_wire(obs, self.layout))
        if "actions" not in reply:
            raise RemotePolicyError(f"protocol mismatch: reply has no 'actions' (keys: {sorted(map(str, reply))})")
        actions = np.asarray(reply["actions"], dtype=np.float32)
        if actions.ndim == 1:
            actions = actions[None]
        if actions.ndim != 2 or actions.shape[1] != self.action_dim:
            raise RemotePolicyError(f"server returned actions of shape {actions.shape}; the {self.robot} robot "
                                    f"needs [H, {self.action_dim}] (is the server serving this robot?)")
        self.last_server_timing = reply.get("server_timing", {})
        return actions

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None


def make_remote(description: EnvDescription, url: str, timeout_s: float = 30.0, layout: str = "auto") -> RemotePolicy:
    return RemotePolicy(description, url, timeout_s=timeout_s, layout=layout)
