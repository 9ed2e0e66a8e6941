"""Measure built candidates one kernel at a time in a persistent, isolated worker process.

The worker times kernels on this machine, or, given a tracker to `connect` to, on one TVM RPC
server. Over RPC a failure can be the kernel's or the server's: after an error the session is
pinged, and when it is gone (or a call hangs) the candidate is `lost` and the rest of the batch
`requeue`: neither is a measurement, and `RpcRunner` retries both on another server.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from cwm_bench.isolation import IsolatedWorker, Outcome, cpus_env
from cwm_bench.measure.protocol import MeasureProtocol

RUN_STATUS = {"error": "run_error", "crash": "run_error", "timeout": "timeout"}
LOST, REQUEUE = "lost", "requeue"  # RPC only: the server went away during / before this candidate


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
    measured_by: str | None = None  # "local" or "rpc:KEY@HOST:PORT"
    lost_as: str | None = None  # for LOST: the status it gets if no server can measure it


class Runner:
    """Times kernels under a `MeasureProtocol`; a crash or hang is that candidate's error row."""

    def __init__(self, protocol: MeasureProtocol, device: str = "cpu", num_threads: int | None = None,
                 seed: int = 0, connect: dict | None = None, cpus: set[int] | None = None,
                 flush_bytes: int = 0, handler: str = "cwm_bench.measure.worker:handle"):
        self.protocol = protocol
        self.device = device
        self.flush_bytes = flush_bytes  # GPU: bytes copied on the device before each timing (evicts L2)
        threads = num_threads or len(cpus or os.sched_getaffinity(0))
        self.worker = IsolatedWorker(handler, env={"TVM_NUM_THREADS": str(threads), **cpus_env(cpus)})
        self.rng = np.random.default_rng(seed)
        # RPC: {"tracker", "key", "session_timeout_s", "connect_timeout_s", "connect_slice_s"}
        self.connect = connect
        self.server: str | None = None  # "host:port" of the RPC server this runner holds a session with
        self.server_cpu: str | None = None
        self.server_gpu: dict | None = None  # {"exist", "name", "compute_version"} of an RPC GPU server
        self.lost: str | None = None  # why the RPC session broke during the current batch
        self._loaded: set[str] = set()
        self._timing_s: dict[str, float] = {}  # key -> calibrated duration of one timing
        self._reference_done: set[str] = set()  # workloads whose reference outputs the worker holds
        self._reference_failed: dict[str, str] = {}  # workload -> why its reference could not run
        self._reference_losses: dict[str, int] = {}  # RPC: sessions lost while running a workload's reference
        self._session_started = 0.0

    @property
    def measured_by(self) -> str:
        return f"rpc:{self.connect['key']}@{self.server}" if self.connect else "local"

    def ensure_session(self) -> str | None:
        """RPC: hold a session with a free server (waiting for one); returns why not, or None."""
        if not self.connect:
            return None
        if self.server and self.worker.alive():
            # TVM's server ends every session after session_timeout_s (how a hung server frees itself):
            # renew well before that, between shares.
            if time.monotonic() - self._session_started < self.connect["session_timeout_s"] / 2:
                return None
            self.drop_session()
        self.server = None
        self._forget_worker_state()
        wait_s = self.connect.get("connect_slice_s") or self.connect["connect_timeout_s"]
        outcome = self.worker.call({"op": "connect", "device": self.device, "wait_s": wait_s, **self.connect},
                                   wait_s + 30.0)  # + the session's own handshake
        if not outcome.ok:
            if outcome.status != "error":  # an error (no free server in the slice) leaves the worker sound
                self.worker.restart()
            return f"no session from the tracker: {outcome.status}: {(outcome.message or '').strip()[:300]}"
        self.server, self.server_cpu = outcome.value["server"], outcome.value["cpu"]
        self.server_gpu = outcome.value.get("gpu")
        self._session_started = time.monotonic()
        return None

    def drop_session(self) -> None:
        self.worker.restart()
        self.server = None
        self._forget_worker_state()

    def measure(self, items: list[MeasureItem]) -> list[MeasureResult]:
        p = self.protocol
        results = {it.key: MeasureResult(it.key, "ok") for it in items}
        self.lost = self.ensure_session()
        if self.lost:
            return [MeasureResult(it.key, REQUEUE, error=self.lost) for it in items]
        measured_by = self.measured_by
        alive = [it for it in items if self._ensure_loaded(it, results[it.key])]
        for _ in range(p.rounds):
            for index in self.rng.permutation(len(alive)):
                item = alive[index]
                result = results[item.key]
                if self.lost or result.status != "ok" or not self._ensure_loaded(item, result):
                    continue
                outcome = self._call({"op": "time", "key": item.key, "workload_id": item.workload_id,
                                            "repeat": self._repeats(item.key), "min_repeat_ms": p.min_repeat_ms,
                                            "number": p.number, "cache_flush": p.cache_flush,
                                            "flush_bytes": self.flush_bytes, "device": self.device}, p.timeout_s)
                if self._failed(outcome, result):
                    continue
                result.latencies_s.extend(outcome.value["latencies_s"])
        for item in alive:
            result = results[item.key]
            if item.reference_path and result.status == "ok" and not self.lost \
                    and self._ensure_loaded(item, result) and self._reference_ready(item):
                self._check(item, result)
        if self.lost:
            self.drop_session()
            for result in results.values():  # unfinished: measure again elsewhere, timings discarded
                if result.status == "ok":
                    result.status, result.latencies_s, result.error = REQUEUE, [], self.lost
        else:
            self._unload([it.key for it in items], keep={it.workload_id for it in items})
        for result in results.values():
            if result.status not in (LOST, REQUEUE):
                result.measured_by = measured_by
        return [results[it.key] for it in items]

    def _reference_ready(self, item: MeasureItem) -> bool:
        """Run the unscheduled program once per workload, in its own call: a naive program can be very
        slow, and that must never be charged to the candidate. If it fails, outputs go unchecked."""
        if item.workload_id in self._reference_failed:
            return False
        if item.workload_id in self._reference_done:
            return True
        outcome = self._call({"op": "reference", "workload_id": item.workload_id,
                                    "reference_path": item.reference_path, "device": self.device},
                                   self.protocol.reference_timeout_s)
        if outcome.ok:
            self._reference_done.add(item.workload_id)
            return True
        if self.connect and self._session_gone(outcome):
            # Maybe the server's fault: try again on the next session, but not forever.
            self._reference_losses[item.workload_id] = self._reference_losses.get(item.workload_id, 0) + 1
            if self._reference_losses[item.workload_id] >= 2:
                self._reference_failed[item.workload_id] = f"{outcome.status}: {outcome.message}"
            self.lost = f"server {self.server} lost in the reference run: {outcome.status}: {outcome.message}"
            return False
        self._reference_failed[item.workload_id] = f"{outcome.status}: {outcome.message}"
        if outcome.status in ("crash", "timeout"):
            self._forget_worker_state()
        elif self.device == "cuda":
            self._replace_cuda_context(outcome)
        return False

    def _replace_cuda_context(self, outcome: Outcome) -> None:
        """A CUDA error can leave the context unusable for every later kernel: replace the worker, or
        over RPC end the session (its server process goes with it; the rest of the share is measured
        again, uncharged, on a fresh one)."""
        if self.connect:
            self.lost = f"CUDA error on server {self.server}; its session is replaced: " \
                        f"{(outcome.message or '').strip()[:200]}"
            return
        self.worker.restart()
        self._forget_worker_state()

    def _check(self, item: MeasureItem, result: MeasureResult) -> None:
        p = self.protocol
        outcome = self._call({"op": "check", "key": item.key, "workload_id": item.workload_id,
                                    "reference_path": item.reference_path, "rtol": p.rtol, "atol": p.atol,
                                    "device": self.device}, p.timeout_s)
        if self._failed(outcome, result):
            return
        result.checked = True
        if not outcome.value["match"]:
            result.status = "wrong_result"
            result.error = f"output differs from the unscheduled program (max abs error " \
                           f"{outcome.value['max_abs_error']:.3g})"

    def _call(self, request: dict, timeout_s: float) -> Outcome:
        # "rpc": a worker restarted after a hang has no session, and must refuse rather than time
        # the kernel on this machine.
        return self.worker.call({**request, "rpc": bool(self.connect)}, timeout_s)

    def _ensure_loaded(self, item: MeasureItem, result: MeasureResult) -> bool:
        if self.lost:
            return False
        if item.key in self._loaded:
            return True
        outcome = self._call({"op": "load", "key": item.key, "lib_path": item.lib_path,
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
        if self.connect and self._session_gone(outcome):
            self.lost = f"server {self.server} lost: {outcome.status}: {(outcome.message or '').strip()[:300]}"
            result.status, result.lost_as, result.error = LOST, RUN_STATUS[outcome.status], self.lost
            return True
        if outcome.status in ("crash", "timeout"):
            self._forget_worker_state()  # the worker was restarted: everything must be loaded again
        elif self.device == "cuda":
            self._replace_cuda_context(outcome)
        result.status = RUN_STATUS[outcome.status]
        result.error = f"{outcome.status}: {outcome.message}"
        return True

    def _session_gone(self, outcome: Outcome) -> bool:
        """RPC: a hang or a dead proxy always loses the session; an error only if a ping fails too.

        The ping round-trips host memory of the server: a CUDA error that broke the server's GPU context
        is the kernel's (a `run_error`, and `_replace_cuda_context` starts a fresh session), not a lost
        server's."""
        if outcome.status != "error":
            return True
        ping = self._call({"op": "ping", "device": "cpu"}, 10.0)
        return not (ping.ok and ping.value["exist"])

    def _forget_worker_state(self) -> None:
        self._loaded.clear()
        self._reference_done.clear()

    def _unload(self, keys: list[str], keep: set[str]) -> None:
        if self.worker.alive():
            self._call({"op": "unload", "keys": keys, "forget_workloads": True, "keep": sorted(keep)},
                             self.protocol.timeout_s)
        self._reference_done &= keep
        self._loaded.difference_update(keys)
        for key in keys:
            self._timing_s.pop(key, None)

    def close(self) -> None:
        self.worker.close()
