"""GPU (CUDA) datasets in two steps: build kernel bundles here, time them on a lent GPU machine
(`tools/cuda_measure.py`, runtime-only TVM), then ingest the results into a dataset folder."""

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
PENDING = "pending.parquet"
WORKLOADS = "workloads.parquet"
