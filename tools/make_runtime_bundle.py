#!/usr/bin/env python3
"""Assemble a runtime-only TVM for the GPU machine (which has no package registry):

    RUNTIME/site/tvm/       the installed `tvm` package without libtvm_compiler.so (259 MB) and
                            without C++ sources, headers, CUTLASS, web files and __pycache__
    RUNTIME/site/tvm_ffi/   apache-tvm-ffi unpacked from its cp312 manylinux wheel (the device runs
                            Python 3.12), downloaded with `pip download` into a cache folder
    RUNTIME/site/tvm/lib/libcudart.so.13   this machine's CUDA runtime (libtvm_runtime_cuda.so links
                            it); used on the device only if the system there has none

Use there:  TVM_USE_RUNTIME_LIB=1 PYTHONPATH=RUNTIME/site python3 tools/cuda_measure.py ...
`--ffi-from-installed` copies this interpreter's tvm_ffi instead (for local tests only).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import zipfile

FFI_VERSION = "0.1.14.post1"  # pinned with apache-tvm 0.27 (see NOTES-tvm.md)
DEVICE_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
SKIP_DIRS = {"3rdparty", "src", "include", "web", "cmake", "__pycache__", "licenses"}
SKIP_FILES = {"libtvm_compiler.so"}


def _installed_dir(package: str) -> str:
    module = __import__(package)
    return os.path.dirname(os.path.abspath(module.__file__))


def _ignore(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n in SKIP_FILES or (n in SKIP_DIRS and os.path.isdir(os.path.join(folder, n)))}


def copy_tvm(site: str) -> str:
    """Copy the tvm package minus the compiler; fail if the runtime libraries are missing."""
    src = _installed_dir("tvm")
    dst = os.path.join(site, "tvm")
    shutil.copytree(src, dst, ignore=_ignore)
    libs = {os.path.basename(p) for p in glob.glob(os.path.join(dst, "lib", "*.so"))}
    missing = {"libtvm_runtime.so", "libtvm_runtime_cuda.so"} - libs
    if missing:
        raise SystemExit(f"{src}/lib lacks {sorted(missing)}: this tvm was built without the CUDA runtime")
    return dst


CUDART = "libcudart.so.13"
CUDART_DIRS = ("/usr/local/cuda/lib64", "/usr/local/cuda/lib", "/usr/lib/x86_64-linux-gnu")


def copy_cudart(tvm_dir: str) -> str | None:
    """Copy the CUDA runtime next to TVM's libraries (None when this machine has none)."""
    for folder in CUDART_DIRS:
        path = os.path.join(folder, CUDART)
        if os.path.exists(path):
            dst = os.path.join(tvm_dir, "lib", CUDART)
            shutil.copyfile(os.path.realpath(path), dst)
            return dst
    return None


def download_ffi_wheel(cache_dir: str, version: str = FFI_VERSION, python: str = DEVICE_PYTHON) -> str:
    """The cp3XX manylinux wheel of apache-tvm-ffi (cached); SystemExit with the pip error if none."""
    tag = "cp" + python.replace(".", "")
    pattern = os.path.join(cache_dir, f"apache_tvm_ffi-{version}-{tag}-*.whl")
    found = glob.glob(pattern)
    if not found:
        os.makedirs(cache_dir, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", "-d", cache_dir,
               *(a for p in PLATFORMS for a in ("--platform", p)), f"apache-tvm-ffi=={version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        found = glob.glob(pattern)
        if done.returncode != 0 or not found:
            raise SystemExit(f"could not download apache-tvm-ffi=={version} for CPython {python}:\n"
                             f"{' '.join(cmd)}\n{done.stderr[-2000:]}\n"
                             f"Put the wheel into {cache_dir} by hand, or pass --ffi-wheel PATH.")
    return sorted(found)[-1]


def unpack_wheel(wheel: str, site: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            top = member.split("/", 1)[0]
            if top.endswith(".data") or SKIP_DIRS.intersection(member.split("/")[1:-1]):
                continue  # headers, sources, scripts: not needed to import
            archive.extract(member, site)
    for path in glob.glob(os.path.join(site, "tvm_ffi", "**", "*.so"), recursive=True):
        os.chmod(path, 0o755)


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def make_runtime(out: str, ffi_wheel: str | None = None, ffi_from_installed: bool = False,
                 cache_dir: str | None = None) -> int:
    """Build RUNTIME (replacing an old one); returns its size in bytes."""
    site = os.path.join(out, "site")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(site)
    if copy_cudart(copy_tvm(site)) is None:
        print(f"note: no {CUDART} here; the device must provide its own", file=sys.stderr)
    if ffi_from_installed:
        shutil.copytree(_installed_dir("tvm_ffi"), os.path.join(site, "tvm_ffi"), ignore=_ignore)
    else:
        cache = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "cwm-bench", "wheels")
        unpack_wheel(ffi_wheel or download_ffi_wheel(cache), site)
    return folder_bytes(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=".cuda/runtime", help="folder to (re)create")
    p.add_argument("--ffi-wheel", default=None, help="a local apache-tvm-ffi cp312 wheel instead of pip")
    p.add_argument("--ffi-from-installed", action="store_true", help="copy this Python's tvm_ffi (tests)")
    p.add_argument("--cache-dir", default=None, help="where downloaded wheels are kept")
    args = p.parse_args(argv)
    size = make_runtime(args.out, args.ffi_wheel, args.ffi_from_installed, args.cache_dir)
    print(f"{args.out}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
