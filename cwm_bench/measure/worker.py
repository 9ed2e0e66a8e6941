"""Measurement worker: loads built kernels, times them, checks their outputs. Runs inside an
IsolatedWorker, so a kernel that segfaults or never returns takes only this process down.

After a `connect` request the same worker drives a TVM RPC session instead: kernels are uploaded
to the server, and tensors, timings and checks live on its device.
"""

from __future__ import annotations

import os
import time

import numpy as np

_modules: dict[str, object] = {}  # key -> loaded runtime module
_inputs: dict[str, list[np.ndarray]] = {}  # workload id -> host arrays (same data for every candidate)
_tensors: dict[str, list[object]] = {}  # workload id -> device tensors used for timing
_reference: dict[str, list[np.ndarray]] = {}  # workload id -> outputs of the unscheduled program
_numbers: dict[str, int] = {}  # key -> calibrated calls per timing
_uploaded: dict[str, str] = {}  # key -> file name in the RPC server's work folder
_session = None  # a tvm.rpc.RPCSession once connected; None: this process's own device


def _device(kind: str):
    import tvm

    if _session is not None:
        return _session.cuda(0) if kind == "cuda" else _session.cpu(0)
    return tvm.cuda(0) if kind == "cuda" else tvm.cpu(0)


def _load(path: str):
    import tvm

    if _session is None:
        return tvm.runtime.load_module(path)
    _session.upload(path)
    return _session.load_module(os.path.basename(path))


def _connect(request: dict) -> dict:
    global _session
    from cwm_bench.measure.rpc import request_session

    started = time.perf_counter()
    session, server = request_session(tuple(request["tracker"]), request["key"], request["session_timeout_s"],
                                      request.get("wait_s"))
    try:  # servers with TVM's compiler report their LLVM CPU name; runtime-only ones do not
        cpu = str(session.get_function("target.llvm_get_system_cpu")())
    except Exception:  # noqa: BLE001
        cpu = None
    gpu = _probe_gpu(session) if request.get("device") == "cuda" else None
    _session = session  # held from here on; the caller checks `gpu` before measuring on it
    return {"server": server, "cpu": cpu, "gpu": gpu, "connect_s": time.perf_counter() - started}


def _probe_gpu(session) -> dict:
    """The GPU as the server's CUDA device API names it; exist False where its runtime has no CUDA."""
    try:
        dev = session.cuda(0)
        if not dev.exist:
            return {"exist": False}
        return {"exist": True, "name": dev.device_name, "compute_version": dev.compute_version}
    except Exception as exc:  # noqa: BLE001  ("Device API cuda is not enabled" on a CPU-only runtime)
        return {"exist": False, "error": str(exc).strip()[:200]}


def _random_args(arg_specs, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for shape, dtype in arg_specs:
        if dtype.startswith("float") or dtype.startswith("bfloat"):
            arrays.append(rng.uniform(-1.0, 1.0, size=shape).astype(dtype))
        elif dtype == "bool":
            arrays.append(np.zeros(shape, dtype=bool))
        else:  # small integers: valid as indices into any dimension of size >= 4
            arrays.append(rng.integers(0, 4, size=shape).astype(dtype))
    return arrays


def _fresh_tensors(arrays, dev):
    import tvm

    return [tvm.runtime.tensor(a.copy(), dev) for a in arrays]


def _run_once(module, arrays, dev) -> list[np.ndarray]:
    tensors = _fresh_tensors(arrays, dev)
    module["main"](*tensors)
    dev.sync()
    return [t.numpy() for t in tensors]


def handle(request: dict) -> dict:
    op = request["op"]
    if op == "connect":
        return _connect(request)
    if request.get("rpc") and _session is None:
        raise ConnectionError("this measurement worker holds no RPC session")
    dev = _device(request.get("device", "cpu"))
    if op == "ping":  # is the session (or the device) still there? a round trip tells
        probe = np.arange(4, dtype="float32")
        return {"exist": bool((_fresh_tensors([probe], dev)[0].numpy() == probe).all())}
    if op == "load":
        started = time.perf_counter()
        module = _load(request["lib_path"])
        _uploaded[request["key"]] = os.path.basename(request["lib_path"])
        wid = request["workload_id"]
        if wid not in _inputs:
            _inputs[wid] = _random_args([(tuple(s), d) for s, d in request["arg_specs"]], request["seed"])
            _tensors[wid] = _fresh_tensors(_inputs[wid], dev)
        for _ in range(request["warmup_runs"]):
            module["main"](*_tensors[wid])
        dev.sync()
        _modules[request["key"]] = module
        if request.get("calibrate_ms"):
            # One adaptive timing (it also warms up) tells how many calls fill the target duration.
            per_call = module.time_evaluator("main", dev, number=1, repeat=1,
                                             min_repeat_ms=request["calibrate_ms"])(*_tensors[wid]).mean
            _numbers[request["key"]] = max(1, int(np.ceil(request["calibrate_ms"] / 1000 / max(per_call, 1e-9))))
            return {"load_s": time.perf_counter() - started, "number": _numbers[request["key"]],
                    "timing_s": _numbers[request["key"]] * per_call}
        return {"load_s": time.perf_counter() - started, "number": None, "timing_s": None}
    if op == "time":
        module = _modules[request["key"]]
        calibrated = _numbers.get(request["key"])
        gpu = request.get("device") == "cuda"
        if gpu and request["cache_flush"]:
            if not request.get("flush_bytes"):
                raise ValueError("cache_flush on a GPU needs flush_bytes (the L2 size is unknown)")
            # as tools/cuda_worker.py: one call per timing, after a device copy that evicts L2
            evaluator = module.time_evaluator("main", dev, number=1, repeat=request["repeat"],
                                              cache_flush_bytes=request["flush_bytes"])
        else:  # the CPU flush never runs on device pointers
            evaluator = module.time_evaluator(
                "main", dev, number=calibrated or request.get("number", 1), repeat=request["repeat"],
                min_repeat_ms=0 if calibrated else request["min_repeat_ms"],
                f_preproc="cache_flush_cpu_non_first_arg" if request["cache_flush"] and not gpu else "")
        return {"latencies_s": [float(x) for x in evaluator(*_tensors[request["workload_id"]]).results]}
    if op == "info":  # the device as tools/cuda_worker.py describes it (cwm_bench.cuda.ingest reads it)
        if not dev.exist:
            return {"exist": False}
        return {"exist": True, "device_name": dev.device_name, "compute_version": dev.compute_version,
                "multi_processor_count": dev.multi_processor_count, "l2_cache_size_bytes": dev.l2_cache_size_bytes,
                "max_shared_memory_per_block": dev.max_shared_memory_per_block, "warp_size": dev.warp_size,
                "max_threads_per_block": dev.max_threads_per_block, "total_global_memory": dev.total_global_memory,
                "max_clock_rate_khz": dev.max_clock_rate, "driver_version": dev.driver_version}
    if op == "reference":
        wid = request["workload_id"]
        if wid not in _reference:
            _reference[wid] = _run_once(_load(request["reference_path"]), _inputs[wid], dev)
        return {}
    if op == "check":
        wid = request["workload_id"]
        got = _run_once(_modules[request["key"]], _inputs[wid], dev)
        worst = 0.0
        for expected, actual in zip(_reference[wid], got, strict=True):
            atol = request["atol"]
            if request.get("device") == "cuda":  # as tools/cuda_worker.py: long float32 reductions summed
                finite = np.abs(expected[np.isfinite(expected)].astype("f8"))  # in another order
                atol *= max(1.0, float(finite.max()) if finite.size else 1.0)
            if not np.allclose(actual, expected, rtol=request["rtol"], atol=atol, equal_nan=True):
                diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
                worst = max(worst, float(np.nanmax(diff)))
        return {"match": worst == 0.0, "max_abs_error": worst}
    if op == "unload":
        for key in request["keys"]:
            if _modules.pop(key, None) is not None and _session is not None:
                try:  # the server's work folder must not fill up over a long collection
                    _session.remove(_uploaded.pop(key))
                except Exception:  # noqa: BLE001
                    pass
            _numbers.pop(key, None)
        if request.get("forget_workloads"):  # all but `keep`: the next batch is usually the same task
            keep = set(request.get("keep", ()))
            for cache in (_inputs, _tensors, _reference):
                for wid in [w for w in cache if w not in keep]:
                    del cache[wid]
        return {}
    raise ValueError(f"unknown measurement op {op!r}")
