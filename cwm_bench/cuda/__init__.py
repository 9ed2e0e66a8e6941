"""GPU (CUDA) datasets in two steps: build kernel bundles here, time them on a lent GPU machine
(`tools/cuda_measure.py`, runtime-only TVM), then ingest the results into a dataset folder."""

import os

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
PENDING = "pending.parquet"
WORKLOADS = "workloads.parquet"


def bundle_name(bundle: str) -> str:
    """`.cuda/gpu-v0-s0/bundle-000` -> `gpu-v0-s0/bundle-000`: how runs name the bundles they measured
    (`tools/pack_for_device.bundle_name`, which the device side uses, is the same function)."""
    return "/".join(os.path.normpath(os.path.abspath(bundle)).split(os.sep)[-2:])
