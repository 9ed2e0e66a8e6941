#!/usr/bin/env python3
"""The GPU side of `tools/cuda_measure.py`: a worker process that owns the CUDA context, answering
JSON-line requests (info, workload, load, time, check) on stdin/stdout. A hang or CUDA error kills
only this process; the parent restarts it. Runs with runtime-only TVM (stdlib + numpy + `tvm`).
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import subprocess
import sys

CUDART = "libcudart.so.13"  # what libtvm_runtime_cuda.so of apache-tvm 0.27 links against


def import_tvm_with_cuda():
    """`import tvm`, plus the CUDA runtime library that runtime-only mode does not load by itself
    (`TVM_USE_RUNTIME_LIB=1` skips tvm's built-in backends, so CUDA modules would not load).
    The CUDA runtime comes from the system when it has one, else from the runtime bundle."""
    import ctypes

    import tvm

    lib_dir = os.path.dirname(os.path.abspath(tvm.base._LOADED_LIBS["tvm_runtime"]._name))
    try:
        ctypes.CDLL(CUDART, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        if os.path.exists(os.path.join(lib_dir, CUDART)):
            ctypes.CDLL(os.path.join(lib_dir, CUDART), mode=ctypes.RTLD_GLOBAL)
    for name in ("libtvm_runtime_cuda.so", "libtvm_runtime_extra.so"):
        path = os.path.join(lib_dir, name)
        key = name[3:-3]
        if os.path.exists(path) and key not in tvm.base._LOADED_LIBS:
            tvm.base._LOADED_LIBS[key] = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    return tvm


def serve_device_binaries(kernel_dirs: list[str]) -> None:
    """Answer TVM's `tvm_callback_cuda_compile` (called when a library holds CUDA source) with the
    cubin compiled at build time for exactly that source; no compiler runs here."""
    import tvm_ffi

    def compiled(source: str, *_target) -> bytes:  # TVM may pass the target too
        digest = hashlib.sha256(source.encode()).hexdigest()
        for folder in kernel_dirs:
            path = os.path.join(folder, f"{digest}.cubin")
            if os.path.exists(path):
                with open(path, "rb") as handle:
                    return handle.read()
        raise RuntimeError(f"no cubin for kernel source {digest[:16]} in {kernel_dirs}")

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", compiled, override=True)


class _Worker:
    def __init__(self):
        import numpy as np

        tvm = import_tvm_with_cuda()
        self.np, self.tvm, self.dev = np, tvm, tvm.cuda(0)
        self.kernel_dirs: list[str] = []
        serve_device_binaries(self.kernel_dirs)
        self.modules: dict = {}
        self.numbers: dict[str, int] = {}
        self.inputs: list = []
        self.reference: list | None = None

    def info(self, _req: dict) -> dict:
        d = self.dev
        return {"device_name": d.device_name, "compute_version": d.compute_version,
                "multi_processor_count": d.multi_processor_count, "l2_cache_size_bytes": d.l2_cache_size_bytes,
                "max_shared_memory_per_block": d.max_shared_memory_per_block, "warp_size": d.warp_size,
                "max_threads_per_block": d.max_threads_per_block, "total_global_memory": d.total_global_memory,
                "max_clock_rate_khz": d.max_clock_rate, "driver_version": d.driver_version,
                "tvm_version": str(self.tvm.__version__)}

    def _run(self, module) -> list:
        tensors = [self.tvm.runtime.tensor(a.copy(), self.dev) for a in self.inputs]
        module["main"](*tensors)
        self.dev.sync()
        return [t.numpy() for t in tensors]

    def workload(self, req: dict) -> dict:
        np = self.np
        rng = np.random.default_rng(req["seed"])
        self.inputs = [rng.uniform(-1, 1, size=s).astype(d) if d.startswith(("float", "bfloat"))
                       else rng.integers(0, 4, size=s).astype(d) for s, d in req["arg_specs"]]
        self.tensors = [self.tvm.runtime.tensor(a, self.dev) for a in self.inputs]
        self.modules.clear()
        self.numbers.clear()
        self.kernel_dirs[:] = req["kernel_dirs"]
        ref = req.get("reference")
        reference = self.tvm.runtime.load_module(ref) if ref else None
        self.reference = self._run(reference) if ref else None
        flush_error = None
        if reference is not None and req.get("flush_bytes"):
            try:  # TVM's evaluator flushes by a device copy; check it works here before relying on it
                reference.time_evaluator("main", self.dev, number=1, repeat=1,
                                         cache_flush_bytes=req["flush_bytes"])(*self.tensors)
            except Exception as exc:  # noqa: BLE001
                flush_error = f"{type(exc).__name__}: {exc}"[-500:]
        return {"reference": self.reference is not None, "flush_error": flush_error}

    def load(self, req: dict) -> dict:
        module = self.tvm.runtime.load_module(req["lib"])
        for _ in range(req["warmup"]):
            module["main"](*self.tensors)
        self.dev.sync()
        per_call = module.time_evaluator("main", self.dev, number=1, repeat=1,
                                         min_repeat_ms=max(1, round(req["min_repeat_ms"])))(*self.tensors).mean
        self.modules[req["key"]] = module
        self.numbers[req["key"]] = max(1, int(req["min_repeat_ms"] / 1000 / max(per_call, 1e-9) + 0.999))
        return {"per_call_s": per_call}

    def time(self, req: dict) -> dict:
        module = self.modules[req["key"]]
        flush = req["flush_bytes"]
        evaluator = module.time_evaluator("main", self.dev, number=1 if flush else self.numbers[req["key"]],
                                          repeat=req["repeats"], cache_flush_bytes=flush)
        # time_evaluator's first (untimed) call warms up: with a flush it runs once more per request
        return {"latencies_s": [float(x) for x in evaluator(*self.tensors).results]}

    def check(self, req: dict) -> dict:
        np = self.np
        worst, match, allowed = 0.0, True, 0.0
        for expected, actual in zip(self.reference or [], self._run(self.modules[req["key"]]), strict=True):
            # atol scales with the output's magnitude: long float32 reductions summed in another
            # order differ by rounding that grows with the values, not with the schedule's quality
            finite = np.abs(expected[np.isfinite(expected)].astype("f8"))
            atol = req["atol"] * max(1.0, float(finite.max()) if finite.size else 1.0)
            allowed = max(allowed, atol)
            if not np.allclose(actual, expected, rtol=req["rtol"], atol=atol, equal_nan=True):
                match = False
                worst = max(worst, float(np.nanmax(np.abs(actual.astype("f8") - expected.astype("f8")))))
        return {"match": match, "max_abs_error": worst, "allowed": f"rtol {req['rtol']:g}, atol {allowed:.3g}"}


def worker_main() -> None:
    """Serve JSON-line requests from stdin; one JSON-line reply each on stdout."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints from TVM go to stderr, never into the reply stream
    worker = _Worker()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            reply = {"ok": True, "value": getattr(worker, req["op"])(req)}
        except Exception as exc:  # noqa: BLE001  (reported to the parent as this request's error)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[-2000:]}
        out.write(json.dumps(reply) + "\n")
        out.flush()


class WorkerProcess:
    """The parent's handle: `call` returns (status, value_or_error); a hang or crash restarts it."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self.proc

    def call(self, op: str, timeout: float | None = None, **req) -> tuple[str, object]:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"op": op, **req}) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            self.kill()
            return "run_error", "worker died"
        ready, _, _ = select.select([proc.stdout], [], [], timeout or self.timeout)
        if not ready:
            self.kill()
            return "timeout", f"{op} took over {timeout or self.timeout:.0f} s"
        line = proc.stdout.readline()
        if not line:
            self.kill()
            return "run_error", f"worker crashed during {op} (exit code {proc.poll()})"
        reply = json.loads(line)
        return ("ok", reply["value"]) if reply["ok"] else ("run_error", reply["error"])

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


if __name__ == "__main__":
    worker_main()
