"""The measurement protocol: how a latency is taken, designed against noise on shared machines.

- warm-up calls after loading (page faults, cold caches, lazy thread-pool start);
- calibration once per kernel: how many calls fill `min_repeat_ms`; every later timing runs exactly
  that many calls (time_evaluator's own adaptation re-runs and discards work on every call);
- `rounds` interleaved rounds over the whole batch, each in a fresh random order, so a slow spell
  of the machine spreads over all candidates instead of landing on one;
- every round takes `repeats_per_round` timings, each at least `min_repeat_ms` long, but no more
  timings than fit in `max_round_s` (at least one): a poor schedule running 2 s a call gets 5
  timings instead of 15, which is plenty when its neighbours differ by 10x, and saves minutes;
- every single timing is kept; the summary is the median (robust to outliers from other tenants).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MeasureProtocol:
    warmup_runs: int = 1
    rounds: int = 5
    repeats_per_round: int = 3
    min_repeat_ms: int = 10
    calibrate: bool = True  # fix calls-per-timing once per kernel; False: time_evaluator adapts each call
    number: int = 1  # with calibrate=False: calls per timing before time_evaluator adapts it upward
    cache_flush: bool = False  # flush CPU caches before each timing (all args but the first)
    max_round_s: float = 0.25  # a round's timings stop here (one timing at least): slow kernels get fewer
    timeout_s: float = 30.0  # per load / per round of one candidate
    reference_timeout_s: float = 300.0  # the unscheduled program, run once per task for output checks
    check_fraction: float = 0.1  # share of candidates whose outputs are checked against the reference
    rtol: float = 1e-3
    atol: float = 1e-3

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def protocol_id(self) -> str:
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]

    @classmethod
    def from_json(cls, text: str) -> MeasureProtocol:
        return cls(**json.loads(text))


def summarize(latencies_s: list[float]) -> float | None:
    """The one-number latency of a candidate: the median of all kept timings."""
    if not latencies_s:
        return None
    ordered = sorted(latencies_s)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
