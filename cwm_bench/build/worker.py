"""Build worker: IRModule JSON in, exported shared library out. Runs inside an IsolatedWorker.

TVM is imported once per worker process, and tensor intrinsics never: the scheduled module already
holds whatever tensorized code it needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time


def build(request: dict) -> dict:
    import tvm

    started = time.perf_counter()
    mod = tvm.ir.load_json(request["mod_json"])
    target = tvm.target.Target(json.loads(request["target"]))
    executable = tvm.compile(mod, target=target)
    executable.export_library(request["out_path"])
    result = {"path": request["out_path"]}
    if request.get("device_binaries_dir"):
        result["device_binaries"] = compile_device_code(executable.mod, target, request["device_binaries_dir"])
    result["build_s"] = time.perf_counter() - started
    return result


def source_digest(source: str) -> str:
    """The name a device binary is stored under: sha256 of the CUDA source TVM generated."""
    return hashlib.sha256(source.encode()).hexdigest()


def compile_device_code(host_module, target, out_dir: str) -> list[str]:
    """Compile the CUDA source of every device module into a cubin `OUT/<digest>.cubin`.

    Without a GPU (no libcuda), TVM's codegen cannot create a real CUDA module and exports the
    kernel's *source* instead; the GPU side would then JIT it at load time. We compile here with
    TVM's own nvcc flags, so the device spends no time compiling and a kernel nvcc rejects
    becomes a build error here. Returns the digests (`tools/cuda_measure.py` serves them back)."""
    from tvm.support import nvcc

    digests = []
    for sub in host_module.imports:
        if sub.kind != "cuda":
            continue
        source = sub.inspect_source("cuda")
        digest = source_digest(source)
        path = os.path.join(out_dir, f"{digest}.cubin")
        if not os.path.exists(path):
            with target:
                binary = nvcc.compile_cuda(source, target_format="cubin", compiler="nvcc")
            # parallel workers may compile the same source: each writes its own temp file, and the
            # rename makes whichever finishes last the (identical) file
            fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".partial")
            with os.fdopen(fd, "wb") as handle:
                handle.write(bytes(binary))
            os.replace(tmp, path)
        digests.append(digest)
    return digests
