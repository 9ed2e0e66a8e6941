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
    if request.get("embed_device_code"):
        executable = _compile_with_cubins(mod, target)
    else:
        executable = tvm.compile(mod, target=target)
    executable.export_library(request["out_path"])
    result = {"path": request["out_path"]}
    if request.get("device_binaries_dir"):
        result["device_binaries"] = compile_device_code(executable.mod, target, request["device_binaries_dir"])
    result["build_s"] = time.perf_counter() - started
    return result


_cubins_compiled = [0]  # calls of the callback below in this process


def _nvcc_cubin(code: str, *_ignored) -> bytes:
    """TVM's compile callback, replaced: nvcc to a cubin for the current target's arch (TVM's default
    is NVRTC, which needs the cuda-python bindings)."""
    from tvm.support import nvcc

    _cubins_compiled[0] += 1
    return nvcc.compile_cuda(code, target_format="cubin", compiler="nvcc")


def _compile_with_cubins(mod, target):
    """Build for a CUDA target with every kernel compiled to a cubin now and embedded in the library, so
    any TVM runtime with CUDA (a runtime-only RPC server too) loads it without compiling anything."""
    import tvm
    import tvm_ffi
    from tvm.support import nvcc  # noqa: F401  (imported first: it registers TVM's own callback)

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", _nvcc_cubin, override=True)
    before = _cubins_compiled[0]
    with target:  # the callback reads the arch from the current target
        executable = tvm.compile(mod, target=target)
    kernels = [sub for sub in executable.mod.imports if sub.kind == "cuda"]
    if kernels and _cubins_compiled[0] == before:
        from cwm_bench.cuda.driver_stub import cuda_runtime_error

        raise RuntimeError(f"TVM stored CUDA source instead of cubins: its CUDA runtime library did not load in "
                           f"this build worker ({cuda_runtime_error() or 'reason unknown'})")
    return executable


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
