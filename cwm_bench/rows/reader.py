"""Where a dataset folder keeps its tables, and reading them, always through the integrity gate.

- a collection folder (`cwm-bench collect` output): DIR/manifest.json, DIR/<table>/part-*.parquet
- a release folder (Hugging Face Hub layout): DIR/README.md, DIR/checksums.sha256,
  DIR/data/<table>/<split>-*-of-*.parquet

`table_files` and `read_table` run the gate (rows/integrity.py `verify_folder`) on the whole folder
before any row is read: a folder whose files disagree with what it records about them raises
DatasetIntegrityError. NotADatasetError means "no such folder or table". A shard of an older schema
reads with the columns added since as nulls (`read_shard`); shards are never null-filled across
(`concat_shards`).
"""

from __future__ import annotations

import glob
import os

import pyarrow as pa
import pyarrow.parquet as pq

from cwm_bench.rows.integrity import MANIFEST, DatasetIntegrityError, one_line, verify_folder
from cwm_bench.rows.schema import ADDED_COLUMNS, TABLES, upgrade

__all__ = ["DatasetIntegrityError", "NotADatasetError", "concat_shards", "data_files", "layout_of", "read_shard",
           "read_table", "table_files"]


class NotADatasetError(ValueError):
    pass


# -- layout ----------------------------------------------------------------------------------------
def layout_of(root: str) -> str:
    """"collection" or "release"; raises NotADatasetError otherwise."""
    if os.path.exists(os.path.join(root, MANIFEST)):
        return "collection"
    if os.path.isdir(os.path.join(root, "data")):
        return "release"
    raise NotADatasetError(f"{root}: neither a collection folder (manifest.json) nor a release folder (data/)")


def _table_dir(root: str, layout: str, table: str) -> str:
    return os.path.join(root, table) if layout == "collection" else os.path.join(root, "data", table)


def data_files(root: str, table: str, layout: str | None = None) -> list[str]:
    """The Parquet files of `table` on disk, unchecked (what `validate` inspects one by one)."""
    layout = layout or layout_of(root)
    return sorted(glob.glob(os.path.join(_table_dir(root, layout, table), "*.parquet")))


# -- reading ---------------------------------------------------------------------------------------
def table_files(root: str, table: str, verify: str = "auto") -> list[str]:
    """The checked files of `table` (the gate runs on the whole folder first)."""
    layout = layout_of(root)
    verify_folder(root, verify, layout=layout)
    return data_files(root, table, layout)


def read_table(root: str, table: str, columns: list[str] | None = None, verify: str = "auto") -> pa.Table:
    """All rows of `table` ("workloads", "records", "noise", ...), optionally only some columns.

    The folder passes the gate first (DatasetIntegrityError); NotADatasetError when it has no such table."""
    files = table_files(root, table, verify)
    if not files:
        raise NotADatasetError(f"{root}: no {table!r} table")
    return concat_shards(table, files, columns)


def concat_shards(table: str, files: list[str], columns: list[str] | None = None) -> pa.Table:
    """The shards' rows in one table: the same columns in the same order, never null-filled across shards
    (a file unreadable past its footer raises DatasetIntegrityError naming it)."""
    parts = []
    for path in files:
        try:
            part = read_shard(table, path, columns)
        except (pa.ArrowException, OSError) as exc:
            raise DatasetIntegrityError(f"{path}: not a readable Parquet file ({type(exc).__name__}: "
                                        f"{one_line(exc)})") from None
        parts.append(part if not parts else part.select(parts[0].column_names))
    try:
        return pa.concat_tables(parts)
    except pa.ArrowInvalid as exc:
        raise DatasetIntegrityError(f"{files[0]}: its shards disagree on the columns ({one_line(exc)})") from None


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
