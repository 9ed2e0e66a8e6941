"""The Parquet schema: a `workloads` table and a `records` table. Documented in the README."""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1"
FEATURE_DIM = 164  # MetaSchedule/Ansor per-store features
STATUSES = ("ok", "build_error", "run_error", "timeout", "wrong_result")

ACTION = pa.struct([
    ("kind", pa.string()),
    ("inputs", pa.list_(pa.string())),
    ("attrs", pa.string()),
    ("outputs", pa.list_(pa.string())),
    ("decision", pa.list_(pa.int64())),
])

WORKLOADS = pa.schema([
    ("workload_id", pa.string()),
    ("task_name", pa.string()),
    ("family", pa.string()),
    ("source", pa.string()),
    ("networks", pa.list_(pa.struct([("network", pa.string()), ("weight", pa.int64())]))),
    ("flops", pa.float64()),
    ("arg_names", pa.list_(pa.string())),
    ("arg_shapes", pa.list_(pa.list_(pa.int64()))),
    ("arg_dtypes", pa.list_(pa.string())),
    ("mod_json", pa.string()),
    ("tvmscript", pa.string()),
])

RECORDS = pa.schema([
    ("record_id", pa.string()),
    ("workload_id", pa.string()),
    ("target", pa.string()),
    ("hw_id", pa.string()),
    ("hw_kind", pa.string()),
    ("hw_name", pa.string()),
    ("hw_arch", pa.string()),
    ("hw_num_cores", pa.int32()),
    ("hw_isa", pa.list_(pa.string())),
    ("hw_descriptor", pa.string()),
    ("program_hash", pa.string()),
    ("trace_json", pa.string()),
    ("actions", pa.list_(ACTION)),
    ("features", pa.list_(pa.list_(pa.float32(), FEATURE_DIM))),
    ("latencies_s", pa.list_(pa.float64())),
    ("latency_s", pa.float64()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("checked", pa.bool_()),
    ("origin", pa.string()),
    ("design_space", pa.int32()),
    ("seed", pa.int64()),
    ("protocol", pa.string()),
    ("measured_at", pa.timestamp("us", tz="UTC")),
    ("collector_version", pa.string()),
    ("tvm_version", pa.string()),
])

TABLES = {"workloads": WORKLOADS, "records": RECORDS}
KEYS = {"workloads": "workload_id", "records": "record_id"}
