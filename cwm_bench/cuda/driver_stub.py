"""A stand-in `libcuda.so.1` for machines that build CUDA kernels but have no NVIDIA driver.

TVM only creates a real CUDA module (kernels compiled to a cubin at build time, embedded in the
exported library) when its CUDA runtime library loads, and that library links the driver. Without
one, `export_library` stores the kernels' CUDA *source*, which a runtime-only GPU server cannot
compile. Build workers therefore load this stub in the driver's place: every driver call fails with
CUDA_ERROR_NO_DEVICE, and builds make none (they only compile and serialize). It is compiled once
with the system C compiler into the cache folder (`$CWM_BENCH_CACHE`, else ~/.cache/cwm-bench),
and only where no real driver is found.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

from cwm_bench.cache import cache_root

# What TVM 0.27's libtvm_runtime_cuda.so imports from the driver, plus the calls a CUDA runtime makes
# first; `_driver_symbols` adds whatever else the installed library needs.
KNOWN_SYMBOLS = ("cuDeviceGetName", "cuFuncSetAttribute", "cuGetErrorName", "cuGetErrorString",
                 "cuLaunchKernelEx", "cuModuleGetFunction", "cuModuleLoadData", "cuModuleUnload",
                 "cuTensorMapEncodeTiled", "cuInit", "cuDriverGetVersion", "cuGetProcAddress",
                 "cuGetProcAddress_v2")
_MESSAGES = {"cuGetErrorName": "CUDA_ERROR_NO_DEVICE",
             "cuGetErrorString": "no CUDA driver here (cwm-bench build-only stub libcuda)"}


class DriverStubError(RuntimeError):
    """The stub could not be made (no C compiler)."""


def real_driver_present() -> bool:
    """True where the NVIDIA driver's libcuda.so.1 loads (a GPU machine)."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def _driver_symbols() -> list[str]:
    """The driver functions the installed TVM CUDA runtime imports (nm), with the known ones."""
    names = set(KNOWN_SYMBOLS)
    try:
        import tvm

        lib = os.path.join(os.path.dirname(tvm.__file__), "lib", "libtvm_runtime_cuda.so")
        out = subprocess.run(["nm", "-D", "--undefined-only", lib], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        names.update(m.group(1) for m in re.finditer(r"\bU (cu[A-Z]\w*)$", out, re.M))
    except (ImportError, OSError, subprocess.SubprocessError):
        pass  # the known list covers TVM 0.27
    return sorted(names)


def stub_source(symbols: list[str]) -> str:
    lines = ["/* cwm-bench: build-only stand-in for libcuda.so.1; every call reports no device */",
             "#define CUDA_ERROR_NO_DEVICE 100"]
    for name in symbols:
        if name in _MESSAGES:
            lines.append(f'int {name}(int error, const char** text) {{ (void)error; '
                         f'if (text) *text = "{_MESSAGES[name]}"; return 0; }}')
        else:
            lines.append(f"int {name}(void) {{ return CUDA_ERROR_NO_DEVICE; }}")
    return "\n".join(lines) + "\n"


def cuda_runtime_error() -> str | None:
    """Why TVM's CUDA runtime library does not load in this process (None: it loads), e.g. a missing
    libcudart.so.13 (the CUDA toolkit's runtime, which builds need too) or libcuda.so.1."""
    try:
        import tvm

        ctypes.CDLL(os.path.join(os.path.dirname(tvm.__file__), "lib", "libtvm_runtime_cuda.so"))
    except OSError as exc:
        return str(exc)
    return None


@functools.lru_cache(maxsize=1)
def stub_dir() -> str:
    """A folder holding the stub as `libcuda.so.1` (made on first use, reused after)."""
    source = stub_source(_driver_symbols())
    folder = os.path.join(cache_root(), "cuda-driver-stub", hashlib.sha256(source.encode()).hexdigest()[:16])
    target = os.path.join(folder, "libcuda.so.1")
    if os.path.exists(target):
        return folder
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise DriverStubError("building CUDA kernels without an NVIDIA driver needs a C compiler (cc) for "
                              "cwm-bench's stand-in libcuda.so.1")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            c_file, so_file = os.path.join(tmp, "stub.c"), os.path.join(tmp, "libcuda.so.1")
            with open(c_file, "w") as handle:
                handle.write(source)
            done = subprocess.run([compiler, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", so_file, c_file],
                                  capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise DriverStubError(f"compiling the stand-in libcuda.so.1 failed: {done.stderr.strip()[:300]}")
            os.replace(so_file, target)  # concurrent makers write identical files
    except (OSError, subprocess.SubprocessError) as exc:
        raise DriverStubError(f"could not make the stand-in libcuda.so.1 in {folder} ({exc}); set "
                              f"CWM_BENCH_CACHE to a writable folder") from exc
    return folder


def build_env() -> dict[str, str]:
    """Environment for a process that builds CUDA kernels: the stub on LD_LIBRARY_PATH where no driver
    is installed (the dynamic loader reads it at process start), else nothing."""
    if real_driver_present():
        return {}
    path = os.environ.get("LD_LIBRARY_PATH")
    return {"LD_LIBRARY_PATH": stub_dir() + (os.pathsep + path if path else "")}
