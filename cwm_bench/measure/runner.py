"""Measure built candidates one kernel at a time in a persistent, isolated worker process."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from cwm_bench.isolation import IsolatedWorker, Outcome
from cwm_bench.measure.protocol import MeasureProtocol

RUN_STATUS = {"error": "run_error", "crash": "run_error", "timeout": "timeout"}


@dataclass
class MeasureItem:
    key: str
    lib_path: str
    workload_id: str
    arg_specs: list[tuple[tuple[int, ...], str]]
    reference_path: str | None = None  # set to check this candidate's outputs


@dataclass
class MeasureResult:
    key: str
    status: str  # "ok" | "run_error" | "timeout" | "wrong_result"
    latencies_s: list[float] = field(default_factory=list)
    error: str | None = None
    checked: bool = False


class Runner:
    """Times kernels under a `MeasureProtocol`; a crash or hang is that candidate's error row."""

    def __init__(self, protocol: MeasureProtocol, device: str = "cpu", num_threads: int | None = None,
                 seed: int = 0):
        self.protocol = protocol
        self.device = device
        threads = num_threads or len(os.sched_getaffinity(0))
        self.worker = IsolatedWorker("cwm_bench.measure.worker:handle", env={"TVM_NUM_THREADS": str(threads)})
        self.rng = np.random.default_rng(seed)
        self._loaded: set[str] = set()
        self._timing_s: dict[str, float] = {}  # key -> calibrated duration of one timing
        self._reference_done: set[str] = set()  # workloads whose reference outputs the worker holds
        self._reference_failed: dict[str, str] = {}  # workload -> why its reference could not run

    def measure(self, items: list[MeasureItem]) -> list[MeasureResult]:
        p = self.protocol
        results = {it.key: MeasureResult(it.key, "ok") for it in items}
        alive = [it for it in items if self._ensure_loaded(it, results[it.key])]
        for _ in range(p.rounds):
            for index in self.rng.permutation(len(alive)):
                item = alive[index]
                result = results[item.key]
                if result.status != "ok" or not self._ensure_loaded(item, result):
                    continue
                outcome = self.worker.call({"op": "time", "key": item.key, "workload_id": item.workload_id,
                                            "repeat": self._repeats(item.key), "min_repeat_ms": p.min_repeat_ms,
                                            "number": p.number, "cache_flush": p.cache_flush,
                                            "device": self.device}, p.timeout_s)
                if self._failed(outcome, result):
                    continue
                result.latencies_s.extend(outcome.value["latencies_s"])
        for item in alive:
            result = results[item.key]
            if item.reference_path and result.status == "ok" and self._ensure_loaded(item, result) \
                    and self._reference_ready(item):
                self._check(item, result)
        self._unload([it.key for it in items], keep={it.workload_id for it in items})
        return [results[it.key] for it in items]

    def _reference_ready(self, item: MeasureItem) -> bool:
        """Run the unscheduled program once per workload, in its own call: a naive program can be very
        slow, and that must never be charged to the candidate. If it fails, outputs go unchecked."""
        if item.workload_id in self._reference_failed:
            return False
        if item.workload_id in self._reference_done:
            return True
        outcome = self.worker.call({"op": "reference", "workload_id": item.workload_id,
                                    "reference_path": item.reference_path, "device": self.device},
                                   self.protocol.reference_timeout_s)
        if outcome.ok:
            self._reference_done.add(item.workload_id)
            return True
        self._reference_failed[item.workload_id] = f"{outcome.status}: {outcome.message}"
        if outcome.status in ("crash", "timeout"):
            self._loaded.clear()
            self._reference_done.clear()
        return False

    def _check(self, item: MeasureItem, result: MeasureResult) -> None:
        p = self.protocol
        outcome = self.worker.call({"op": "check", "key": item.key, "workload_id": item.workload_id,
                                    "reference_path": item.reference_path, "rtol": p.rtol, "atol": p.atol,
                                    "device": self.device}, p.timeout_s)
        if self._failed(outcome, result):
            return
        result.checked = True
        if not outcome.value["match"]:
            result.status = "wrong_result"
            result.error = f"output differs from the unscheduled program (max abs error " \
                           f"{outcome.value['max_abs_error']:.3g})"

    def _ensure_loaded(self, item: MeasureItem, result: MeasureResult) -> bool:
        if item.key in self._loaded:
            return True
        outcome = self.worker.call({"op": "load", "key": item.key, "lib_path": item.lib_path,
                                    "workload_id": item.workload_id, "arg_specs": item.arg_specs,
                                    "seed": 0, "warmup_runs": self.protocol.warmup_runs,
                                    "calibrate_ms": self.protocol.min_repeat_ms if self.protocol.calibrate else 0,
                                    "device": self.device}, self.protocol.timeout_s)
        if self._failed(outcome, result):
            return False
        self._loaded.add(item.key)
        if outcome.value.get("timing_s"):
            self._timing_s[item.key] = outcome.value["timing_s"]
        return True

    def _repeats(self, key: str) -> int:
        """Timings this round: `repeats_per_round`, fewer when they would not fit in `max_round_s`."""
        p = self.protocol
        timing_s = self._timing_s.get(key)
        if timing_s is None:
            return p.repeats_per_round
        return int(min(p.repeats_per_round, max(1, p.max_round_s // max(timing_s, 1e-9))))

    def _failed(self, outcome: Outcome, result: MeasureResult) -> bool:
        if outcome.ok:
            return False
        if outcome.status in ("crash", "timeout"):
            self._loaded.clear()  # the worker was restarted: everything must be loaded again
            self._reference_done.clear()
        result.status = RUN_STATUS[outcome.status]
        result.error = f"{outcome.status}: {outcome.message}"
        return True

    def _unload(self, keys: list[str], keep: set[str]) -> None:
        if self.worker.alive():
            self.worker.call({"op": "unload", "keys": keys, "forget_workloads": True, "keep": sorted(keep)},
                             self.protocol.timeout_s)
        self._reference_done &= keep
        self._loaded.difference_update(keys)
        for key in keys:
            self._timing_s.pop(key, None)

    def close(self) -> None:
        self.worker.close()
