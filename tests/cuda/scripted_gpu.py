"""A measuring worker that answers like `cwm_bench.measure.worker` on a GPU, without one.

Every request is logged (with the worker's pid) to $CWM_TEST_GPU_LOG; the first `time` request
ever made raises a CUDA error (a marker file $CWM_TEST_GPU_FAIL records that it happened)."""

from __future__ import annotations

import hashlib
import json
import os

H100 = {"device_name": "NVIDIA H100 80GB HBM3", "compute_version": "9.0", "multi_processor_count": 132,
        "l2_cache_size_bytes": 50 * 2**20, "max_shared_memory_per_block": 49152, "warp_size": 32,
        "max_threads_per_block": 1024, "total_global_memory": 80 * 2**30, "max_clock_rate_khz": 1980000,
        "driver_version": 13000}


def handle(request: dict) -> dict:
    with open(os.environ["CWM_TEST_GPU_LOG"], "a") as log:
        log.write(json.dumps({**{k: v for k, v in request.items() if k != "arg_specs"}, "pid": os.getpid()}) + "\n")
    op = request["op"]
    if op == "info":
        return {"exist": True, **H100}
    if op == "connect":  # as a session with an RPC GPU server answers
        return {"server": "10.0.0.7:9090", "cpu": None, "connect_s": 0.0,
                "gpu": {"exist": True, "name": H100["device_name"], "compute_version": H100["compute_version"]}}
    if op == "ping":
        return {"exist": True}
    if op == "load":
        return {"load_s": 0.0, "number": 1, "timing_s": 1e-3}
    if op == "time":
        marker = os.environ["CWM_TEST_GPU_FAIL"]
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("CUDAError: an illegal memory access was encountered")
        scale = 1 + int(hashlib.sha1(request["key"].encode()).hexdigest()[:4], 16) / 65535
        return {"latencies_s": [1e-5 * scale] * request["repeat"]}
    if op == "check":
        return {"match": True, "max_abs_error": 0.0}
    return {}
