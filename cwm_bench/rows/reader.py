"""Read a table from either dataset layout.

- a collection folder (`cwm-bench collect` output): DIR/manifest.json, DIR/<table>/part-*.parquet
- a release folder (Hugging Face Hub layout): DIR/README.md, DIR/data/<table>/<split>-*-of-*.parquet
"""

from __future__ import annotations

import glob
import os

import pyarrow as pa
import pyarrow.parquet as pq


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
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files], promote_options="default")
