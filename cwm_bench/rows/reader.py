"""Read a table from either dataset layout.

- a collection folder (`cwm-bench collect` output): DIR/manifest.json, DIR/<table>/part-*.parquet
- a release folder (Hugging Face Hub layout): DIR/README.md, DIR/data/<table>/<split>-*-of-*.parquet
"""

from __future__ import annotations

import glob
import os

import pyarrow as pa
import pyarrow.parquet as pq

from cwm_bench.rows.schema import ADDED_COLUMNS, TABLES, upgrade


class NotADatasetError(ValueError):
    pass


def layout_of(root: str) -> str:
    """"collection" or "release"; raises NotADatasetError otherwise."""
    if os.path.exists(os.path.join(root, "manifest.json")):
        return "collection"
    if os.path.isdir(os.path.join(root, "data")):
        return "release"
    raise NotADatasetError(f"{root}: neither a collection folder (manifest.json) nor a release folder (data/)")


def table_files(root: str, table: str) -> list[str]:
    if layout_of(root) == "collection":
        return sorted(glob.glob(os.path.join(root, table, "*.parquet")))
    return sorted(glob.glob(os.path.join(root, "data", table, "*.parquet")))


def read_table(root: str, table: str, columns: list[str] | None = None) -> pa.Table:
    """All rows of `table` ("workloads", "records", "noise", ...), optionally only some columns."""
    files = table_files(root, table)
    if not files:
        raise NotADatasetError(f"{root}: no {table!r} table")
    return pa.concat_tables([read_shard(table, f, columns) for f in files], promote_options="default")


def read_shard(table: str, path: str, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file; a shard of an older schema gets the columns added since, as nulls."""
    added_since = ADDED_COLUMNS.get(table, ())
    if not added_since:
        return pq.read_table(path, columns=columns)
    if columns is None:
        return upgrade(table, pq.read_table(path))
    present = set(pq.ParquetFile(path).schema_arrow.names)
    added = [c for c in columns if c in added_since and c not in present]
    data = pq.read_table(path, columns=[c for c in columns if c not in added])
    for name in added:
        field = TABLES[table].field(name)
        data = data.append_column(field, pa.nulls(data.num_rows, field.type))
    return data.select(columns)
