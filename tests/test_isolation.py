"""IsolatedWorker / WorkerPool with a trivial handler: timeouts, crashes, errors, order."""

from __future__ import annotations

import pytest

from cwm_bench.isolation import IsolatedWorker, WorkerPool

HANDLER = "tests.worker_handlers:handle"


def test_ok_error_crash_timeout_and_recovery():
    worker = IsolatedWorker(HANDLER)
    try:
        assert worker.call({"op": "echo", "value": 3}, 10).value == 3
        error = worker.call({"op": "raise"}, 10)
        assert error.status == "error" and "ValueError: asked to fail" in error.message
        crash = worker.call({"op": "exit", "code": 7}, 10)
        assert crash.status == "crash" and "exit code 7" in crash.message
        hang = worker.call({"op": "sleep", "seconds": 60}, 1.0)
        assert hang.status == "timeout"
        assert worker.call({"op": "echo", "value": "after"}, 10).value == "after"
        assert worker.restarts == 2
    finally:
        worker.close()


def test_pool_keeps_request_order_and_isolates_failures():
    pool = WorkerPool(HANDLER, size=2)
    try:
        requests = [{"op": "echo", "value": i} for i in range(5)]
        requests[2] = {"op": "sleep", "seconds": 60}
        requests[3] = {"op": "exit", "code": 1}
        outcomes = pool.map(requests, timeout_s=2.0)
        assert [o.status for o in outcomes] == ["ok", "ok", "timeout", "crash", "ok"]
        assert [outcomes[i].value for i in (0, 1, 4)] == [0, 1, 4]
    finally:
        pool.close()


def test_worker_that_cannot_start_raises_clearly():
    worker = IsolatedWorker("tests.worker_handlers:no_such_function")
    with pytest.raises(RuntimeError, match="died while starting"):
        worker.start()


def test_workers_pin_themselves_to_their_cores():
    from cwm_bench.hardware import usable_cores
    from cwm_bench.isolation import cpus_env

    last = sorted(__import__("os").sched_getaffinity(0))[-1]
    worker = IsolatedWorker(HANDLER, env=cpus_env({last}))
    try:
        assert worker.call({"op": "whoami"}, 30).value["cpus"] == [last]
    finally:
        worker.close()
    assert usable_cores() >= 1


def test_lender_takes_requests_only_while_its_cores_are_free():
    pool = WorkerPool(HANDLER, size=1, lender_env={})
    try:
        pool.spawn()
        requests = [{"op": "whoami", "seconds": 0.3} for _ in range(4)]
        busy = pool.map(requests, timeout_s=30, lender_free=lambda: False)
        assert {o.value["pid"] for o in busy} == {pool.workers[0].process.pid}
        free = pool.map(requests, timeout_s=30, lender_free=lambda: True)
        assert [o.status for o in free] == ["ok"] * 4
        assert {o.value["pid"] for o in free} == {pool.workers[0].process.pid, pool.lender.process.pid}
        without = pool.map(requests[:2], timeout_s=30)  # no predicate: the lender is never used
        assert {o.value["pid"] for o in without} == {pool.workers[0].process.pid}
    finally:
        pool.close()
