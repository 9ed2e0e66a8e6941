#!/usr/bin/env python3
"""Pack a runtime-only TVM and CUDA kernel bundles into one small folder for the GPU machine.

    python tools/pack_for_device.py --runtime .cuda/runtime --out .cuda/payload .cuda/gpu-v0-s*/bundle-*

writes OUT/runtime.tar.xz, one OUT/bundles/<build>--<bundle>.tar.xz per bundle and OUT/bundles.txt
(the bundle folders inside the archives, one a line). Kernel libraries of one bundle differ in a few
KiB each, so a solid xz archive is ~10x smaller than the folder: thousands of kernels fit the device
tool's 64 MiB per call. Only what the device reads travels (manifest.json, libs/, kernels/), not the
pending rows. An archive newer than its bundle's manifest is kept, so packing again as more bundles
finish only compresses the new ones; archives of bundles not named are removed.
On the GPU machine: `bash tools/cuda_device_run.sh OUT_FOLDER $OUT [cuda_measure options]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile

DEVICE_FILES = ("manifest.json", "libs", "kernels")


def _xz_tar(out_path: str, members: list[tuple[str, str]]) -> int:
    """A solid .tar.xz of (path on disk, name in archive) pairs; returns its size."""
    with tarfile.open(out_path + ".partial", "w:xz", preset=3) as archive:
        for path, name in members:
            archive.add(path, arcname=name)
    os.replace(out_path + ".partial", out_path)
    return os.path.getsize(out_path)


def bundle_name(bundle: str) -> str:
    """`.cuda/gpu-v0-s0/bundle-000` -> `gpu-v0-s0/bundle-000` (unique across build folders)."""
    parts = os.path.normpath(os.path.abspath(bundle)).split(os.sep)
    return "/".join(parts[-2:])


def pack(runtime: str, bundles: list[str], out: str) -> dict[str, int]:
    """Write the payload; returns archive name -> size in bytes."""
    for bundle in bundles:
        if not os.path.exists(os.path.join(bundle, "manifest.json")):
            raise SystemExit(f"{bundle}: no manifest.json (not a finished bundle)")
    names = [bundle_name(b) for b in bundles]
    if len(set(names)) != len(names):
        raise SystemExit(f"two bundles would share a name in the archive: {names}")
    os.makedirs(os.path.join(out, "bundles"), exist_ok=True)
    sizes = {"runtime.tar.xz": _xz_tar(os.path.join(out, "runtime.tar.xz"),
                                       [(os.path.join(runtime, "site"), "site")])}
    wanted = set()
    for bundle, name in zip(bundles, names, strict=True):
        archive = os.path.join(out, "bundles", name.replace("/", "--") + ".tar.xz")
        wanted.add(os.path.basename(archive))
        fresh = os.path.exists(archive) and os.path.getmtime(archive) > os.path.getmtime(
            os.path.join(bundle, "manifest.json"))
        if not fresh:
            _xz_tar(archive, [(os.path.join(bundle, f), f"bundles/{name}/{f}") for f in DEVICE_FILES
                              if os.path.exists(os.path.join(bundle, f))])
        sizes[f"bundles/{os.path.basename(archive)}"] = os.path.getsize(archive)
    for stale in set(os.listdir(os.path.join(out, "bundles"))) - wanted:
        os.remove(os.path.join(out, "bundles", stale))
    with open(os.path.join(out, "bundles.txt"), "w") as handle:
        handle.writelines(f"bundles/{n}\n" for n in names)
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundles", nargs="+", help="bundle folders written by `cwm-bench build-cuda`")
    p.add_argument("--runtime", default=".cuda/runtime", help="made by tools/make_runtime_bundle.py")
    p.add_argument("--out", default=".cuda/payload")
    args = p.parse_args(argv)
    sizes = pack(args.runtime, args.bundles, args.out)
    for name, size in sizes.items():
        print(f"{args.out}/{name}: {size / 2**20:.1f} MiB")
    if sum(sizes.values()) > 60 * 2**20:
        print("warning: over 60 MiB; the device tool carries 64 MiB a call, working tree included", file=sys.stderr)
    print(f"total {sum(sizes.values()) / 2**20:.1f} MiB (the device tool carries at most 64 MiB a call)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
