"""The Parquet schema: a `workloads` table and a `records` table. Documented in the README."""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "2"  # 2: records.measured_by
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
    ("measured_by", pa.string()),  # "local", or "rpc:KEY@HOST:PORT" of the server that timed it
    ("collector_version", pa.string()),
    ("tvm_version", pa.string()),
])

TABLES = {"workloads": WORKLOADS, "records": RECORDS}
KEYS = {"workloads": "workload_id", "records": "record_id"}
# Columns added after schema 1; shards written before them read as nulls there.
ADDED_COLUMNS = {"workloads": (), "records": ("measured_by",)}


def upgrade(table_name: str, table: pa.Table) -> pa.Table:
    """Give a shard of an older schema the columns added since (as nulls), in schema order."""
    missing = [c for c in ADDED_COLUMNS[table_name] if c not in table.column_names]
    if not missing:
        return table
    schema = TABLES[table_name]
    for name in missing:
        table = table.append_column(schema.field(name), pa.nulls(table.num_rows, schema.field(name).type))
    order = [n for n in schema.names if n in table.column_names]
    return table.select(order + [n for n in table.column_names if n not in order])
