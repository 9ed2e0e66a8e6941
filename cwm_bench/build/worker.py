"""Build worker: IRModule JSON in, exported shared library out. Runs inside an IsolatedWorker.

TVM is imported once per worker process, and tensor intrinsics never: the scheduled module already
holds whatever tensorized code it needs.
"""

from __future__ import annotations

import json
import time


def build(request: dict) -> dict:
    import tvm

    started = time.perf_counter()
    mod = tvm.ir.load_json(request["mod_json"])
    target = tvm.target.Target(json.loads(request["target"]))
    executable = tvm.compile(mod, target=target)
    executable.export_library(request["out_path"])
    return {"path": request["out_path"], "build_s": time.perf_counter() - started}
