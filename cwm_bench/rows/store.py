"""A dataset folder that survives kill -9: immutable Parquet shards, each written to a temp file
and renamed into place, so a shard is either whole or absent. The shards are the truth; the manifest
is a summary rebuilt from them after every write.

    DIR/manifest.json
    DIR/workloads/part-<time>-<n>.parquet
    DIR/records/part-<time>-<n>.parquet
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from cwm_bench.rows.reader import read_shard
from cwm_bench.rows.schema import KEYS, SCHEMA_VERSION, TABLES

PARTIAL_SUFFIX = ".partial"


def identity_columns(table: str) -> list[str]:
    """What makes a row unique: a workload by its id, a record by its program *on a hardware*."""
    return ["record_id", "hw_id"] if table == "records" else [KEYS[table]]


class DatasetBusyError(RuntimeError):
    pass


@dataclass
class TaskProgress:
    """What a folder already holds for one (workload, hardware) pair."""

    count: int = 0
    by_origin: Counter | None = None
    program_hashes: set[str] | None = None


class DatasetStore:
    """A dataset folder. One writer at a time: the folder is locked while a writable store is open;
    `readonly=True` takes no lock and changes nothing."""

    def __init__(self, root: str, provenance: dict | None = None, readonly: bool = False):
        self.root = root
        self.provenance = provenance or self._existing_provenance()
        self._sequence = 0
        self._entries: dict[str, dict] = {}  # shard path -> manifest entry (shards never change)
        self.readonly = readonly
        if readonly:
            return
        for table in TABLES:
            os.makedirs(os.path.join(root, table), exist_ok=True)
        self._lock = open(os.path.join(root, ".lock"), "w")  # noqa: SIM115  (held for the store's life)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock.close()
            raise DatasetBusyError(f"{root}: another cwm-bench process is writing to this folder") from exc
        self._remove_partials()

    # -- writing -------------------------------------------------------------------------------
    def write(self, table: str, rows: list[dict]) -> str | None:
        """Append rows as one new shard (atomically); returns its path."""
        if not rows:
            return None
        return self.write_arrow(table, pa.Table.from_pylist(rows, schema=TABLES[table]))

    def write_arrow(self, table: str, data: pa.Table) -> str | None:
        """Append an Arrow table (columns of the table's schema) as one new shard, atomically."""
        if self.readonly:
            raise PermissionError(f"{self.root}: opened read-only")
        if data.num_rows == 0:
            return None
        schema = TABLES[table].with_metadata({
            "cwm_bench.schema_version": SCHEMA_VERSION,
            "cwm_bench.table": table,
            "cwm_bench.provenance": json.dumps(self.provenance, sort_keys=True),
        })
        arrow = data.select(schema.names).cast(schema)
        self._sequence += 1
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{self._sequence:04d}.parquet"
        final = os.path.join(self.root, table, name)
        partial = final + PARTIAL_SUFFIX
        pq.write_table(arrow, partial, compression="zstd")
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, final)
        self.write_manifest()
        return final

    def write_manifest(self) -> None:
        for table in TABLES:
            for path in self.shards(table):
                if path not in self._entries:
                    self._entries[path] = self._shard_entry(path)
        shards = {table: [self._entries[p] for p in self.shards(table)] for table in TABLES}
        manifest = {
            "format": "cwm-bench",
            "schema_version": SCHEMA_VERSION,
            "provenance": self.provenance,
            "rows": {t: sum(s["rows"] for s in v) for t, v in shards.items()},
            "shards": shards,
        }
        path = os.path.join(self.root, "manifest.json")
        with open(path + PARTIAL_SUFFIX, "w") as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
        os.replace(path + PARTIAL_SUFFIX, path)

    def compact(self, table: str = "records") -> tuple[int, int]:
        """Merge all shards of `table` into one, dropping duplicate keys; returns (shards before, rows).

        Crash-safe: the merged shard lands (atomically) before the old ones are removed; a crash in
        between leaves duplicates that the next `compact` removes (and `validate` reports).
        """
        old = self.shards(table)
        if len(old) <= 1:
            return len(old), self.read(table).num_rows if old else 0
        merged = self.read(table)
        keys = identity_columns(table)
        seen: set[tuple] = set()
        keep = []
        for i, key in enumerate(zip(*(merged.column(k).to_pylist() for k in keys), strict=True)):
            if key not in seen:
                seen.add(key)
                keep.append(i)
        self.write_arrow(table, merged.take(keep))
        for path in old:
            os.remove(path)
            self._entries.pop(path, None)
        self.write_manifest()
        return len(old), len(keep)

    def close(self) -> None:
        if not self.readonly and not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    # -- reading -------------------------------------------------------------------------------
    def shards(self, table: str) -> list[str]:
        return sorted(glob.glob(os.path.join(self.root, table, "*.parquet")))

    def read(self, table: str, columns: list[str] | None = None) -> pa.Table:
        paths = self.shards(table)
        if not paths:
            return TABLES[table].empty_table().select(columns) if columns else TABLES[table].empty_table()
        return pa.concat_tables([read_shard(table, p, columns) for p in paths])

    def known_keys(self, table: str) -> set:
        """Identities already stored: workload ids, or (record_id, hw_id) pairs for records."""
        keys = identity_columns(table)
        columns = self.read(table, keys)
        values = zip(*(columns.column(k).to_pylist() for k in keys), strict=True)
        return {v[0] for v in values} if len(keys) == 1 else set(values)

    def progress(self, hw_id: str) -> dict[str, TaskProgress]:
        """Per workload id: how many records this hardware already has, by origin, and their programs."""
        table = self.read("records", ["workload_id", "hw_id", "origin", "program_hash"])
        progress: dict[str, TaskProgress] = {}
        for wid, hw, origin, program in zip(*(table.column(c).to_pylist() for c in table.column_names),
                                            strict=True):
            if hw != hw_id:
                continue
            p = progress.setdefault(wid, TaskProgress(0, Counter(), set()))
            p.count += 1
            p.by_origin[origin] += 1  # type: ignore[index]
            p.program_hashes.add(program)  # type: ignore[union-attr]
        return progress

    # -- helpers -------------------------------------------------------------------------------
    def _existing_provenance(self) -> dict:
        try:
            with open(os.path.join(self.root, "manifest.json")) as handle:
                return json.load(handle).get("provenance", {})
        except (OSError, ValueError):
            return {}

    def _remove_partials(self) -> None:
        """Left-overs of a killed write: never complete, never referenced."""
        for table in TABLES:
            for path in glob.glob(os.path.join(self.root, table, "*" + PARTIAL_SUFFIX)):
                os.remove(path)

    @staticmethod
    def _shard_entry(path: str) -> dict:
        return {"file": os.path.basename(path), "rows": pq.ParquetFile(path).metadata.num_rows,
                "sha256": sha256_of(path)}


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
