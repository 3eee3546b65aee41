"""Calls to one model from many episodes, answered together.

A `Batcher` owns one thread that runs policy calls. Calls submitted while it is busy (or within
a short collection window) are answered by one `act_batch` (policies/base.py): one forward pass
for siblings of a family that batches natively. It waits only while more calls can still come —
fewer are queued than there are clients — so a lone client is answered at once.

With `fixed_rows` every forward pass runs on exactly `max_batch` rows (padded), so a call's
result does not depend on which other calls it was batched with: what makes a shared-policy
evaluation replay exactly (policies/base.py `act_batch`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from pi0bench.policies.base import act_batch

_STOP = object()


class Batcher:
    def __init__(self, max_batch: int = 8, window_ms: float = 5.0, clients: Callable[[], int] = lambda: 1,
                 fixed_rows: bool = False):
        """`max_batch` 1 answers calls one at a time; `clients` says how many callers could be
        waiting now (e.g. open connections), so the window is never waited out in vain."""
        self.max_batch = int(max_batch)
        self.rows = self.max_batch if fixed_rows and self.max_batch > 1 else None
        self.window_s = float(window_ms) / 1000.0
        self.clients = clients
        self.batch_sizes: Counter[int] = Counter()  # how many calls each forward pass answered
        self._calls: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="pi0bench-batcher", daemon=True)
        self._thread.start()

    def submit(self, policy, obs: dict) -> Future:
        """A future of `policy`'s chunk for `obs`; `policy` must not have another call pending."""
        future: Future = Future()
        self._calls.put((policy, obs, future))
        return future

    def close(self) -> None:
        self._calls.put(_STOP)
        self._thread.join()

    def _serve(self) -> None:
        while True:
            first = self._calls.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = time.monotonic() + self.window_s
            while len(batch) < min(self.max_batch, max(self.clients(), 1)):
                try:
                    call = self._calls.get(timeout=max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                if call is _STOP:
                    self._calls.put(_STOP)
                    break
                batch.append(call)
            self._answer(batch)

    def _answer(self, batch: list[tuple]) -> None:
        """One act_batch for the batch; a failure fails every call in it (each caller gets the
        error: the policies' states have already taken their observations)."""
        self.batch_sizes[len(batch)] += 1
        started = time.perf_counter()
        try:
            chunks = act_batch([policy for policy, _, _ in batch], [obs for _, obs, _ in batch], self.rows)
        except Exception as exc:  # noqa: BLE001 - handed to every caller of this batch
            for _, _, future in batch:
                future.set_exception(exc)
            return
        infer_ms = (time.perf_counter() - started) * 1000.0
        for (_, _, future), chunk in zip(batch, chunks):
            future.set_result((np.asarray(chunk), infer_ms, len(batch)))
