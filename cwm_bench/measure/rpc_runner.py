"""Measure a batch on many RPC servers at once: one lane (session) per server, one kernel at a time.

A lane takes a share of the batch and measures it under the usual protocol (interleaved rounds over
its share). When its server dies or hangs, the candidate in flight is charged one attempt and the
rest of the share goes back to the queue uncharged; a candidate charged `max_attempts` times becomes
an error row (`run_error` or `timeout`). A lane that cannot get a session twice in a row sits out the
batch; when every lane does, the collection stops with a clear error instead of writing rows that
blame kernels for missing servers.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from cwm_bench.hardware import gpu_arch
from cwm_bench.measure.protocol import MeasureProtocol
from cwm_bench.measure.rpc import RpcConfig, TrackerError, check_tracker, servers_for, tracker_summary
from cwm_bench.measure.runner import LOST, REQUEUE, MeasureItem, MeasureResult, Runner

MAX_CONNECT_FAILURES = 2  # consecutive, per lane and batch
PACE_S = 5.0  # at most one session request per lane this often, however fast refusals come back
REGISTRATION_GRACE_S = 30.0  # a key without servers this long stops the batch (restarted ones re-register in seconds)


class RpcRunner:
    """Same contract as `Runner.measure`, spread over the servers registered under `config.key`."""

    def __init__(self, protocol: MeasureProtocol, config: RpcConfig, device: str = "cpu", seed: int = 0,
                 expected_cpu: str | None = None, log: Callable[[str], None] = print,
                 expected_gpu: tuple[str, str] | None = None, flush_bytes: int = 0):
        self.config = config
        self.servers = check_tracker(config)  # fails now, clearly, if the tracker or its servers are missing
        self.expected_cpu = expected_cpu
        self.expected_gpu = expected_gpu  # (name, "sm_XY") the rows record, for GPU servers
        self.log = log
        connect = {"tracker": list(config.address), "key": config.key, "session_timeout_s": config.session_timeout_s,
                   "connect_timeout_s": config.connect_timeout_s,
                   "connect_slice_s": min(config.connect_slice_s, config.connect_timeout_s)}
        lanes = config.parallel or len(self.servers)
        self.lanes = [Runner(protocol, device, num_threads=1, seed=seed + i, connect=connect, flush_bytes=flush_bytes)
                      for i in range(lanes)]
        self.retries = 0  # candidates measured again because a server went away
        self.pool = ThreadPoolExecutor(max_workers=len(self.lanes), thread_name_prefix="cwm-rpc-lane")

    def measure(self, items: list[MeasureItem]) -> list[MeasureResult]:
        if not items:
            return []
        chunk = math.ceil(len(items) / len(self.lanes))
        pending = deque(items)
        attempts = {it.key: 0 for it in items}
        final: dict[str, MeasureResult] = {}
        state = {"busy": 0, "sitting_out": 0, "error": None}
        cond = threading.Condition()

        def lane_loop(lane: Runner) -> None:
            failures, waiting_since = 0, None
            while True:
                counts = self._server_counts() if lane.server is None else None
                if counts and counts[1] == 0 and any(other.server for other in self.lanes if other is not lane):
                    # Every free server is taken by our other lanes: wait for one to be handed back
                    # (or for the work to run out) rather than queue at the tracker.
                    failures, waiting_since = 0, None  # not this lane's failure: others make progress
                    with cond:
                        if state["error"] is not None or not (pending or state["busy"]):
                            return
                        cond.wait(timeout=2.0)
                    continue
                with cond:
                    while not pending and state["busy"] and state["error"] is None:
                        cond.wait()  # a busy lane may still hand work back
                    if not pending or state["error"] is not None:
                        return
                    share = [pending.popleft() for _ in range(min(chunk, len(pending)))]
                    state["busy"] += 1
                attempt_started = time.monotonic()
                try:
                    why_not = f"no server is registered under key {self.config.key!r}" \
                        if counts and counts[0] == 0 else lane.ensure_session()
                    if why_not is None:
                        self._check_device(lane)
                        results = lane.measure(share)
                    else:
                        results = [MeasureResult(it.key, REQUEUE, error=why_not) for it in share]
                except Exception as exc:  # noqa: BLE001  (re-raised by measure() in the caller's thread)
                    with cond:
                        state["error"] = exc
                        state["busy"] -= 1
                        cond.notify_all()
                    return
                with cond:
                    state["busy"] -= 1
                    self._settle(share, results, attempts, final, pending)
                    failures = failures + 1 if why_not else 0
                    waiting_since = (waiting_since or attempt_started) if why_not else None
                    if failures >= MAX_CONNECT_FAILURES and self._gives_up(lane, counts, waiting_since):
                        state["sitting_out"] += 1
                        self.log(f"rpc: a lane got no session twice ({why_not}); it sits out this batch")
                        if state["sitting_out"] == len(self.lanes):  # lanes still looping may yet finish
                            state["error"] = TrackerError(
                                f"no server under key {self.config.key!r} at {self.config.tracker} gave a "
                                f"session; the batch in flight is not saved (resume once servers are back): "
                                f"{why_not}")
                        cond.notify_all()
                        return
                    cond.notify_all()
                    if why_not:  # pace the attempts: a refusal can come back at once (a tracker gone)
                        cond.wait(max(0.0, min(self.config.connect_slice_s, PACE_S) -
                                      (time.monotonic() - attempt_started)))

        # Lanes run on the pool's long-lived threads: a worker process dies with the thread that
        # started it (PR_SET_PDEATHSIG), so short-lived threads would kill every session per batch.
        for future in [self.pool.submit(lane_loop, lane) for lane in self.lanes]:
            future.result()
        if state["error"] is not None:
            raise state["error"]
        missing = [it.key for it in items if it.key not in final]
        if missing:  # never silently: every candidate is a row, or the collection stops
            raise TrackerError(f"{len(missing)} candidate(s) found no server to measure them at {self.config.tracker}")
        return [final[it.key] for it in items]

    def _gives_up(self, lane: Runner, counts: tuple[int, int] | None, waiting_since: float) -> bool:
        """After failed session requests (the share handed back each time): sit out the batch when other
        lanes hold servers (they finish the work), when the tracker has had no server for the key (or
        not answered) for REGISTRATION_GRACE_S, or after connect_timeout_s (long enough for a hung
        server's session to expire)."""
        waited = time.monotonic() - waiting_since
        if counts is None or counts[0] == 0:  # the tracker does not answer, or has no server for the key:
            return waited >= min(REGISTRATION_GRACE_S, self.config.connect_timeout_s)  # restarting ones re-register
        if any(other.server for other in self.lanes if other is not lane):
            return True
        return waited >= self.config.connect_timeout_s

    def _settle(self, share: list[MeasureItem], results: list[MeasureResult], attempts: dict[str, int],
                final: dict[str, MeasureResult], pending: deque) -> None:
        for item, result in zip(share, results, strict=True):
            if result.status == REQUEUE:
                pending.append(item)
                continue
            if result.status == LOST:
                attempts[item.key] += 1
                if attempts[item.key] < self.config.max_attempts:
                    self.retries += 1
                    pending.append(item)
                    continue
                result = MeasureResult(item.key, result.lost_as or "run_error",
                                       error=f"{result.error} (lost on {attempts[item.key]} servers)")
            final[item.key] = result

    def _server_counts(self) -> tuple[int, int] | None:
        """(registered, free) servers under the key, or None when the tracker does not answer."""
        try:
            summary = tracker_summary(self.config.address, 5.0)
        except TrackerError:
            return None  # let the connect attempt fail and say why
        free = summary.get("queue_info", {}).get(self.config.key, {}).get("free", 0)
        return len(servers_for(summary, self.config.key)), free

    def _check_device(self, lane: Runner) -> None:
        """Every server under the key must be the hardware the rows record (as far as it tells)."""
        if self.expected_cpu and lane.server_cpu and lane.server_cpu != self.expected_cpu:
            raise TrackerError(f"server {lane.server} (key {self.config.key!r}) has an {lane.server_cpu!r} CPU but "
                               f"the collection builds for {self.expected_cpu!r}; give each CPU model its own key")
        gpu = lane.server_gpu
        if self.expected_gpu is None or gpu is None:
            return
        if not gpu.get("exist"):
            why = f": {gpu['error']}" if gpu.get("error") else ""
            raise TrackerError(f"server {lane.server} (key {self.config.key!r}) has no CUDA device (its TVM runtime "
                               f"lacks CUDA, or the GPU is not visible to it){why}")
        if gpu.get("name") and gpu.get("compute_version"):
            seen = (str(gpu["name"]), gpu_arch(gpu["compute_version"]))
            if seen != self.expected_gpu:
                raise TrackerError(f"server {lane.server} (key {self.config.key!r}) has an {seen[0]} ({seen[1]}) but "
                                   f"the rows record {self.expected_gpu[0]} ({self.expected_gpu[1]}); give each "
                                   f"GPU model its own key")

    def close(self) -> None:
        for lane in self.lanes:
            lane.close()
        self.pool.shutdown(wait=True)
