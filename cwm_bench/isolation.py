"""Persistent worker processes that a crashing or hanging request kills alone.

Building and measuring run foreign code (LLVM, generated kernels): a segfault or an endless loop
there must cost one request, never the collector. Each worker imports TVM once and then serves
requests over a pipe; a request that times out or kills the process gets an outcome saying so, and
the worker is restarted for the next request.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import resource
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

CPUS_ENV = "CWM_BENCH_WORKER_CPUS"  # comma-separated cores a worker pins itself to


def cpus_env(cpus: set[int] | None) -> dict[str, str]:
    """Environment pinning an isolated worker to `cpus` (empty when None). TVM's thread pool would
    otherwise re-pin its threads to cores 0..N-1 whatever the process's mask (TVM_BIND_THREADS)."""
    return {CPUS_ENV: ",".join(str(c) for c in sorted(cpus)), "TVM_BIND_THREADS": "0"} if cpus else {}


@dataclass
class Outcome:
    """What happened to one request: ok (value set), error (handler raised), timeout or crash."""

    status: str
    value: Any = None
    message: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _serve(read_fd: int, write_fd: int, handler_path: str) -> None:
    """Child main loop: answer requests until the parent says stop or goes away."""
    try:  # die with the parent, even when it is killed with SIGKILL (Linux)
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    # A crashing kernel must die at once: a core dump of a TVM process takes seconds (long enough to
    # look like a hang) and fills disks over a long collection.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cpus = os.environ.get(CPUS_ENV)
    if cpus:  # before any import: every thread TVM or LLVM starts inherits the set
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    rx, tx = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    module_name, _, function_name = handler_path.partition(":")
    handler = getattr(importlib.import_module(module_name), function_name)
    tx.send(("ready", None))
    while True:
        try:
            request = rx.recv()
        except EOFError:
            return
        if request is None:
            return
        try:
            tx.send(("ok", handler(request)))
        except Exception as exc:  # noqa: BLE001  (reported to the parent as this request's error)
            tx.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))


class IsolatedWorker:
    """One persistent child process running `handler_path` ("module:function") on each request."""

    def __init__(self, handler_path: str, env: dict[str, str] | None = None, start_timeout_s: float = 120.0):
        self.handler_path = handler_path
        self.env = dict(env or {})
        self.start_timeout_s = start_timeout_s
        self.restarts = 0
        self.process: subprocess.Popen | None = None
        self.conn: Connection | None = None  # answers from the child (what `wait` watches)
        self._tx: Connection | None = None
        self._sent_at = 0.0
        self._ready = False
        self.closed = False  # after close(): no request starts it again (another thread may still call)

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the child without waiting for it to import its handler (`wait_ready` does)."""
        # A fresh interpreter (not multiprocessing's spawn, which re-runs the caller's main script).
        self._ready = False
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        code = f"from cwm_bench.isolation import _serve; _serve({down_r}, {up_w}, {self.handler_path!r})"
        self.process = subprocess.Popen([sys.executable, "-c", code], pass_fds=(down_r, up_w),
                                        env={**os.environ, **self.env}, stdin=subprocess.DEVNULL)
        os.close(down_r)
        os.close(up_w)
        self._tx = Connection(down_w, readable=False)
        self.conn = Connection(up_r, writable=False)

    def wait_ready(self) -> None:
        assert self.conn is not None
        if not self.conn.poll(self.start_timeout_s):
            self.kill()
            raise RuntimeError(f"worker {self.handler_path} did not start in {self.start_timeout_s} s")
        try:
            self.conn.recv()
        except EOFError as exc:
            code = self.process.wait()
            self.kill()
            raise RuntimeError(f"worker {self.handler_path} died while starting (exit code {code})") from exc
        self._ready = True

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure_started(self) -> None:
        if self.closed:
            raise RuntimeError(f"worker {self.handler_path} was closed")
        if not self.alive():
            self.kill()
            self.start()
        elif not self._ready:
            self.wait_ready()

    def send(self, request: Any) -> None:
        self.ensure_started()
        assert self._tx is not None
        self._sent_at = time.perf_counter()
        try:
            self._tx.send(request)
        except (BrokenPipeError, OSError):
            pass  # the child died; receive() will report the crash

    def receive(self) -> Outcome:
        """The answer to the last request; call when `conn` is readable."""
        assert self.conn is not None
        elapsed = time.perf_counter() - self._sent_at
        try:
            status, payload = self.conn.recv()
        except (EOFError, ConnectionResetError, OSError):
            assert self.process is not None
            try:
                code: int | None = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            self.restart()
            return Outcome("crash", message=f"worker process died (exit code {code})", seconds=elapsed)
        if status == "ok":
            return Outcome("ok", value=payload, seconds=elapsed)
        return Outcome("error", message=payload, seconds=elapsed)

    def timed_out(self, timeout_s: float) -> Outcome:
        self.restart()
        return Outcome("timeout", message=f"no answer within {timeout_s:g} s; worker restarted",
                       seconds=timeout_s)

    def call(self, request: Any, timeout_s: float) -> Outcome:
        self.send(request)
        assert self.conn is not None
        if not self.conn.poll(timeout_s):
            return self.timed_out(timeout_s)
        return self.receive()

    def restart(self) -> None:
        self.kill()
        self.restarts += 1

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
        for conn in (self.conn, self._tx):
            if conn is not None:
                conn.close()
        self.process, self.conn, self._tx = None, None, None

    def close(self) -> None:
        self.closed = True
        if self.alive() and self._tx is not None:
            try:
                self._tx.send(None)
                assert self.process is not None
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


class WorkerPool:
    """N isolated workers sharing a queue of requests; results come back in request order.

    `lender`: an optional extra worker (say, pinned to the measuring cores) that takes requests
    only while `lender_free()` says its cores are idle; it is never handed a request otherwise."""

    def __init__(self, handler_path: str, size: int, env: dict[str, str] | None = None,
                 lender_env: dict[str, str] | None = None):
        self.workers = [IsolatedWorker(handler_path, env) for _ in range(max(1, size))]
        self.lender = IsolatedWorker(handler_path, lender_env) if lender_env is not None else None

    @property
    def everyone(self) -> list[IsolatedWorker]:
        return self.workers + ([self.lender] if self.lender else [])

    def spawn(self) -> None:
        """Start every worker at once (each imports TVM: seconds) without waiting; the first request
        to each waits for it."""
        for w in self.everyone:
            if not w.alive():
                w.kill()
                w.spawn()

    def map(self, requests: list[Any], timeout_s: float,
            lender_free: Callable[[], bool] | None = None) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(requests)
        queue = list(range(len(requests)))[::-1]
        idle = list(self.workers)
        lender_ready = self.lender is not None and lender_free is not None  # not busy with a request
        busy: dict[Connection, tuple[IsolatedWorker, int, float]] = {}
        while queue or busy:
            if queue and lender_ready and self.lender is not None and lender_free is not None and lender_free():
                idle.append(self.lender)
                lender_ready = False
            while queue and idle:
                worker, index = idle.pop(), queue.pop()
                worker.send(requests[index])
                assert worker.conn is not None
                busy[worker.conn] = (worker, index, time.perf_counter() + timeout_s)
            next_deadline = min(deadline for _, _, deadline in busy.values())
            wait_s = max(0.0, next_deadline - time.perf_counter())
            if queue and lender_ready:
                wait_s = min(wait_s, 0.02)  # look again soon whether the lender's cores came free
            finished = []
            for conn in wait(list(busy), timeout=wait_s):
                worker, index, _ = busy.pop(conn)  # type: ignore[index]
                outcomes[index] = worker.receive()
                finished.append(worker)
            now = time.perf_counter()
            for conn, (worker, index, deadline) in list(busy.items()):
                if now >= deadline:
                    del busy[conn]
                    outcomes[index] = worker.timed_out(timeout_s)
                    finished.append(worker)
            for worker in finished:
                if worker is self.lender:
                    lender_ready = True  # back to idle only through lender_free(): its cores may be busy again
                else:
                    idle.append(worker)
        return [o for o in outcomes if o is not None]

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self.everyone)

    def close(self) -> None:
        for worker in self.everyone:
            worker.close()
