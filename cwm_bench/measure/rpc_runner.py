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
from collections import deque
from collections.abc import Callable

from cwm_bench.measure.protocol import MeasureProtocol
from cwm_bench.measure.rpc import RpcConfig, TrackerError, check_tracker, tracker_summary
from cwm_bench.measure.runner import LOST, REQUEUE, MeasureItem, MeasureResult, Runner

MAX_CONNECT_FAILURES = 2  # consecutive, per lane and batch


class RpcRunner:
    """Same contract as `Runner.measure`, spread over the servers registered under `config.key`."""

    def __init__(self, protocol: MeasureProtocol, config: RpcConfig, device: str = "cpu", seed: int = 0,
                 expected_cpu: str | None = None, log: Callable[[str], None] = print):
        self.config = config
        self.servers = check_tracker(config)  # fails now, clearly, if the tracker or its servers are missing
        self.expected_cpu = expected_cpu
        self.log = log
        connect = {"tracker": list(config.address), "key": config.key,
                   "session_timeout_s": config.session_timeout_s, "connect_timeout_s": config.connect_timeout_s}
        lanes = config.parallel or len(self.servers)
        self.lanes = [Runner(protocol, device, num_threads=1, seed=seed + i, connect=connect) for i in range(lanes)]
        self.retries = 0  # candidates measured again because a server went away

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
            failures = 0
            while True:
                if lane.server is None and self._no_free_server() \
                        and any(other.server for other in self.lanes if other is not lane):
                    return  # every server is taken (by our other lanes): waiting would only stall the batch
                with cond:
                    while not pending and state["busy"] and state["error"] is None:
                        cond.wait()  # a busy lane may still hand work back
                    if not pending or state["error"] is not None:
                        return
                    share = [pending.popleft() for _ in range(min(chunk, len(pending)))]
                    state["busy"] += 1
                try:
                    why_not = lane.ensure_session()
                    if why_not is None:
                        self._check_cpu(lane)
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
                    if failures >= MAX_CONNECT_FAILURES:
                        state["sitting_out"] += 1
                        self.log(f"rpc: a lane got no session twice ({why_not}); it sits out this batch")
                        if state["sitting_out"] == len(self.lanes):
                            state["error"] = TrackerError(
                                f"no server under key {self.config.key!r} at {self.config.tracker} gave a "
                                f"session in {MAX_CONNECT_FAILURES} x {self.config.connect_timeout_s:g} s; "
                                f"the batch in flight is not saved (resume once servers are back): {why_not}")
                        cond.notify_all()
                        return
                    cond.notify_all()

        threads = [threading.Thread(target=lane_loop, args=(lane,), daemon=True) for lane in self.lanes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if state["error"] is not None:
            raise state["error"]
        return [final[it.key] for it in items]

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

    def _no_free_server(self) -> bool:
        try:
            queue = tracker_summary(self.config.address, 5.0).get("queue_info", {}).get(self.config.key, {})
        except TrackerError:
            return False  # let the connect attempt fail and say why
        return queue.get("free", 0) == 0

    def _check_cpu(self, lane: Runner) -> None:
        if self.expected_cpu and lane.server_cpu and lane.server_cpu != self.expected_cpu:
            raise TrackerError(f"server {lane.server} (key {self.config.key!r}) has an {lane.server_cpu!r} CPU but "
                               f"the collection builds for {self.expected_cpu!r}; give each CPU model its own key")

    def close(self) -> None:
        for lane in self.lanes:
            lane.close()
