"""A TVM RPC server whose "CUDA GPU" is this CPU: `collect --target cuda --rpc-tracker` without a GPU.

    python tests/cuda/fake_gpu_server.py --tracker HOST:PORT --key KEY [--port P]

The server is TVM's own (`tvm.rpc.Server`, registered with the tracker under KEY, one forked
process per session). Before it serves, two entries of TVM's registry are replaced in it:
- `device_api.cuda`: TVM's CPU device API, so "GPU" tensors live in host memory, copies (the L2
  flush too) are memcpys and timings use TVM's default timer;
- `ffi.Module.load_from_bytes.cuda`: a loader that accepts only what a runtime-only GPU server can
  run (format `cubin`, an ELF image; CUDA source is refused), reads the kernel names from the
  module's function table and returns a host library in which each kernel spins for a time derived
  from its launch arguments (so programs differ, deterministically) and writes nothing (so every
  output matches the reference's).
Faults, once each across all servers (a marker file records that it happened): FAKE_GPU_ABORT_ONCE=PATH
aborts the session process at the first kernel call (a server lost mid-measurement);
FAKE_GPU_FAIL_ONCE=PATH makes the next kernel call fail with a CUDA error, the session staying up.
With FAKE_GPU_WRONG=1 every kernel writes a number set by its launch configuration into the first
element of each buffer, so programs scheduled differently (the reference too) disagree.
The device attributes (name, SMs, L2) are whatever TVM's CPU device API answers: none, like a
server that cannot describe its GPU.
"""

from __future__ import annotations

import argparse
import struct


def _read_module(blob: bytes) -> tuple[str, list[str], bytes]:
    """(format, kernel names, binary) of a serialized CUDA module (TVM 0.27's layout)."""
    pos = 0

    def u64() -> int:
        nonlocal pos
        (value,) = struct.unpack_from("<Q", blob, pos)
        pos += 8
        return value

    def text() -> str:
        nonlocal pos
        size = u64()
        pos += size
        return blob[pos - size:pos].decode()

    fmt = text()
    names = []
    for _ in range(u64()):
        text()  # the table's key; the function info repeats it as its name
        names.append(text())
        count = u64()
        pos += 4 * count  # argument dtypes
        for _ in range(u64()):
            text()  # launch parameter tags
        count = u64()
        pos += 4 * count  # per-argument extra tags (int32 each)
    size = u64()
    return fmt, names, blob[pos:pos + size]


KERNEL_C = r"""
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <tvm/ffi/c_api.h>

static int first_call(const char* variable) {  /* 1 once per marker file, across servers */
  const char* marker = getenv(variable);
  if (!marker || access(marker, F_OK) == 0) return 0;
  int fd = open(marker, O_CREAT | O_EXCL | O_WRONLY, 0644);
  if (fd < 0) return 0;
  close(fd);
  return 1;
}

static int fake_kernel(const TVMFFIAny* args, int32_t num_args) {
  if (first_call("FAKE_GPU_ABORT_ONCE")) abort();
  if (first_call("FAKE_GPU_FAIL_ONCE")) {
    TVMFFIErrorSetRaisedFromCStr("RuntimeError", "CUDAError: an illegal memory access was encountered (fake)");
    return -1;
  }
  uint64_t h = 1469598103934665603ULL;
  for (int32_t i = 0; i < num_args; ++i)
    if (args[i].type_index == kTVMFFIInt) h = (h ^ (uint64_t)args[i].v_int64) * 1099511628211ULL;
  if (getenv("FAKE_GPU_WRONG"))  /* a value set by the launch configuration: programs disagree */
    for (int32_t i = 0; i < num_args; ++i)
      if (args[i].type_index == kTVMFFIOpaquePtr && args[i].v_ptr) ((float*)args[i].v_ptr)[0] = (float)(h % 997 + 2);
  int64_t spin_ns = 20000 + (int64_t)(h % 180000);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  do { clock_gettime(CLOCK_MONOTONIC, &b); }
  while ((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec) < spin_ns);
  return 0;
}
"""


def install() -> None:
    """Replace the CUDA device API and module loader in this process (its forks inherit them)."""
    import hashlib
    import os
    import subprocess
    import sys
    import tempfile

    import tvm
    import tvm_ffi
    from tvm_ffi import libinfo

    compiler = "tvm_compiler" in getattr(tvm.base, "_LOADED_LIBS", {})
    print(f"fake GPU server: TVM compiler loaded={compiler}", file=sys.stderr, flush=True)
    cpu_api = tvm_ffi.get_global_func("device_api.cpu")
    tvm_ffi.register_global_func("device_api.cuda", lambda: cpu_api(), override=True)
    folder = tempfile.mkdtemp(prefix="fake-gpu-")
    kept = []  # loaded libraries live as long as the server

    def load_cuda(blob) -> object:
        fmt, names, binary = _read_module(bytes(blob))
        if fmt != "cubin" or binary[:4] != b"\x7fELF":
            raise RuntimeError(f"this runtime-only server runs compiled cubins only, got format {fmt!r}")
        source = KERNEL_C + "".join(
            f"int __tvm_ffi_{name}(void* self, const TVMFFIAny* args, int32_t n, TVMFFIAny* rv) "
            f"{{ (void)self; (void)rv; return fake_kernel(args, n); }}\n" for name in names)
        path = os.path.join(folder, hashlib.sha256(source.encode()).hexdigest()[:16] + ".so")
        if not os.path.exists(path):
            c_file = path[:-3] + ".c"
            with open(c_file, "w") as handle:
                handle.write(source)
            ffi = libinfo.find_libtvm_ffi()
            include = os.environ.get("FAKE_GPU_FFI_INCLUDE") or libinfo.find_include_path()  # a runtime copy has none
            subprocess.run(["cc", "-shared", "-fPIC", "-O1", f"-I{include}", "-o", path + ".tmp",
                            c_file, ffi, f"-Wl,-rpath,{os.path.dirname(ffi)}"], check=True, capture_output=True)
            os.replace(path + ".tmp", path)
        kept.append(tvm.runtime.load_module(path))
        return kept[-1]

    tvm_ffi.register_global_func("ffi.Module.load_from_bytes.cuda", load_cuda, override=True)


def main() -> None:
    from tvm import rpc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracker", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--port-end", type=int, default=None)
    parser.add_argument("--silent", action="store_true")  # always silent; accepted as TVM's server accepts it
    args = parser.parse_args()
    host, port = args.tracker.rsplit(":", 1)
    server = rpc.Server(args.host, args.port, args.port_end or args.port + 1, key=args.key,
                        tracker_addr=(host, int(port)), silent=True, server_init_callback=install)
    server.proc.join()


if __name__ == "__main__":
    main()
