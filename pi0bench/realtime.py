"""Real-time execution: how long a policy call lasts in simulated time, and what the robot
does with a chunk that arrives late.

A call that lasts L ms costs d = ceil(L · control_hz / 1000) control steps, during which the
robot plays the previous chunk's unexecuted rows (then holds the last of them). What happens
when the new chunk arrives is the execution mode:

- `naive` — the chunk starts from its first row, although the d rows meant for the time of
  thinking are already stale (a synchronous deployment without latency compensation);
- `skip` — the chunk starts at row d, the row meant for the moment it arrives;
- `rtc` — real-time chunking (Black, Galliker & Levine 2025): as `skip`, and the chunk is
  sampled by flow matching guided to continue the rows that play while it is computed, so the
  switch is smooth. Only flow-matching policies (`act_guided`) can do it. The delay the
  guidance assumes is the previous call's (with a fixed latency: the true one).

Latency is measured (the call's wall time), fixed, or fixed plus seeded Gaussian jitter drawn
per call (never negative), so a jittered run replays exactly from its episode seeds. With
zero latency every mode is exactly the normal loop.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pi0bench.errors import UserError

MODES = ("naive", "skip", "rtc")


@dataclass(frozen=True)
class Realtime:
    mode: str = "naive"
    latency_ms: float | None = None  # None: measured
    jitter_ms: float = 0.0  # standard deviation of the per-call Gaussian jitter

    def validate(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"unknown --realtime-mode {self.mode!r}; choose from: {', '.join(MODES)}")
        if self.latency_ms is not None and self.latency_ms < 0:
            raise UserError(f"--latency-ms must be >= 0 (got {self.latency_ms})")
        if self.jitter_ms < 0 or (self.jitter_ms and self.latency_ms is None):
            raise UserError(f"--latency-jitter-ms must be >= 0 and comes with --latency-ms (got {self.jitter_ms})")

    @property
    def reproducible(self) -> bool:
        return self.latency_ms is not None

    @property
    def label(self) -> str:
        """The run-directory suffix: mode and latency."""
        latency = "measured" if self.latency_ms is None else f"{self.latency_ms:g}ms"
        jitter = f"-jitter{self.jitter_ms:g}ms" if self.jitter_ms else ""
        return f"{'' if self.mode == 'naive' else self.mode + '-'}{latency}{jitter}"

    def record(self) -> dict:
        """What run.json says; a measured latency depends on the machine and its load, so such
        a run cannot be replayed exactly."""
        return {"mode": self.mode, "latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms,
                "latency": "measured" if self.latency_ms is None else ("jittered" if self.jitter_ms else "fixed"),
                "reproducible": self.reproducible}

    def latency_source(self, episode_seed: int) -> Callable[[float], float]:
        """measured call time (ms) -> the latency the world experiences (ms)."""
        if self.latency_ms is None:
            return lambda measured: measured
        if not self.jitter_ms:
            return lambda measured: float(self.latency_ms)
        rng = np.random.default_rng([episode_seed, zlib.crc32(b"latency")])
        return lambda measured: max(0.0, float(rng.normal(self.latency_ms, self.jitter_ms)))

    def first_fresh_row(self, delay: int, chunk_rows: int) -> int:
        """Where execution of a chunk that arrived `delay` steps late starts."""
        return 0 if self.mode == "naive" else min(delay, chunk_rows - 1)


def delay_steps(latency_ms: float, control_hz: float) -> int:
    """Whole control steps that pass while a policy call of `latency_ms` runs (rounded up:
    the chunk is not there until the call has returned)."""
    return max(0, math.ceil(latency_ms * control_hz / 1000.0 - 1e-9))


def while_thinking(leftover: np.ndarray, held: np.ndarray, steps: int) -> list[np.ndarray]:
    """The actions played during `steps` control steps of thinking: the previous chunk's
    unexecuted rows, then the last of them (or the last commanded action) held."""
    rows = list(leftover[:steps])
    return rows + [rows[-1] if rows else held] * (steps - len(rows))
