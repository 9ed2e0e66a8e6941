"""A dataset folder that survives kill -9: immutable Parquet shards, each written to a temp file
and renamed into place, so a shard is either whole or absent. The manifest lists every shard with its
size, row count and sha256, and is rewritten (atomically) after every write.

    DIR/manifest.json
    DIR/workloads/part-<time>-<n>.parquet
    DIR/records/part-<time>-<n>.parquet

A store is a context manager: `with DatasetStore(dir) as store:` releases the folder's lock on exit.
Its reads pass the integrity gate (cwm_bench.rows.integrity): a shard that disagrees with the manifest
or the schema raises DatasetIntegrityError. The writer itself accepts shards its manifest does not
list yet (a write killed between the shard and the manifest leaves one; its next write lists it);
read-only stores do not. Rows are checked before they are written (rows/rules.py): an ok record
without a positive latency, its timings or its features is refused (InvalidRowsError).
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import time
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from cwm_bench.rows.integrity import (
    MANIFEST,
    DatasetIntegrityError,
    file_sha256,
    one_line,
    remember_sha256,
    verify_folder,
)
from cwm_bench.rows.reader import NotADatasetError, concat_shards
from cwm_bench.rows.rules import table_problems
from cwm_bench.rows.schema import KEYS, SCHEMA_VERSION, TABLES

PARTIAL_SUFFIX = ".partial"


def identity_columns(table: str) -> list[str]:
    """What makes a row unique: a workload by its id, a record by its program *on a hardware*."""
    return ["record_id", "hw_id"] if table == "records" else [KEYS[table]]


class DatasetBusyError(RuntimeError):
    pass


class InvalidRowsError(ValueError):
    """Rows that break the dataset's rules (e.g. an ok record without a latency); nothing was written."""


# What reading or writing a dataset folder refuses with a one-line message: what commands catch.
DATASET_ERRORS = (NotADatasetError, DatasetIntegrityError, DatasetBusyError, InvalidRowsError)


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
        self.readonly = readonly
        self._lock = None
        self._sequence = 0
        self._retired: set[str] = set()  # shards a compaction replaced: no longer listed, about to go
        manifest = self._existing_manifest()
        self.provenance = provenance or manifest.get("provenance", {})
        self._entries: dict[str, dict] = {}
        self._extra_tables: list[str] = []
        if readonly:
            return
        os.makedirs(root, exist_ok=True)
        lock = open(os.path.join(root, ".lock"), "w")  # noqa: SIM115  (held for the store's life)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            lock.close()
            raise DatasetBusyError(f"{root}: another cwm-bench process is writing to this folder") from exc
        self._lock = lock
        for table in TABLES:
            os.makedirs(os.path.join(root, table), exist_ok=True)
        self._remove_partials()
        # What the manifest records stays recorded: a shard changed on disk since is caught by the
        # gate, never re-recorded by the next write (only `write_manifest()` re-reads the disk).
        self._entries = {os.path.join(root, table, e["file"]): e
                         for table, entries in (manifest.get("shards") or {}).items()
                         if isinstance(entries, list) for e in entries if isinstance(e, dict) and "file" in e}
        self._extra_tables = [t for t in (manifest.get("shards") or {}) if t not in TABLES]

    def __enter__(self) -> DatasetStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

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
        problems = table_problems(table, arrow)
        if problems:
            row, message = problems[0]
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            raise InvalidRowsError(f"{self.root}: refusing to write {table}: row {row}: {message}{more}")
        self._sequence += 1
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{self._sequence:04d}.parquet"
        final = os.path.join(self.root, table, name)
        partial = final + PARTIAL_SUFFIX
        pq.write_table(arrow, partial, compression="zstd")
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        entry = _shard_entry(partial, name)  # hashed before the rename: the manifest follows at once
        os.replace(partial, final)
        remember_sha256(final, entry["sha256"])
        self._entries[final] = entry
        self._refresh_manifest()
        return final

    def write_manifest(self) -> None:
        """Rebuild manifest.json from the shards on disk (sizes, rows, sha256 read from the files):
        after a killed write, or to accept shards changed on purpose (`validate --rebuild-manifest`)."""
        self._require_writable()
        for table in self._tables():
            for path in self.shards(table):
                self._entries[path] = _shard_entry(path, os.path.basename(path))
        self._refresh_manifest()

    def record_table(self, table: str) -> None:
        """List the files of another table (e.g. `noise`) in the manifest, so readers check them too."""
        self._require_writable()
        if table not in self._extra_tables and table not in TABLES:
            self._extra_tables.append(table)
        for path in self.shards(table):
            self._entries[path] = _shard_entry(path, os.path.basename(path))
        self._refresh_manifest()

    def _refresh_manifest(self) -> None:
        """The manifest of the shards on disk: recorded entries as recorded, new shards read."""
        shards = {}
        for table in self._tables():
            entries = []
            for path in self.shards(table):
                if path in self._retired:
                    continue
                if path not in self._entries:
                    self._entries[path] = _shard_entry(path, os.path.basename(path))
                entries.append(self._entries[path])
            shards[table] = entries
        manifest = {
            "format": "cwm-bench",
            "schema_version": SCHEMA_VERSION,
            "provenance": self.provenance,
            "rows": {t: sum(s["rows"] for s in v) for t, v in shards.items()},
            "shards": shards,
        }
        path = os.path.join(self.root, MANIFEST)
        with open(path + PARTIAL_SUFFIX, "w") as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
        os.replace(path + PARTIAL_SUFFIX, path)

    def compact(self, table: str = "records") -> tuple[int, int]:
        """Merge all shards of `table` into one, dropping duplicate keys; returns (shards before, rows).

        Crash-safe: the merged shard lands (atomically) and the manifest stops listing the old ones
        before they are removed; a crash in between leaves unlisted duplicates that the next `compact`
        removes (and `validate` reports).
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
        self._retired.update(old)
        self._refresh_manifest()
        for path in old:
            os.remove(path)
            self._entries.pop(path, None)
        self._retired.difference_update(old)
        self._refresh_manifest()
        return len(old), len(keep)

    def close(self) -> None:
        if self._lock is not None and not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    # -- reading -------------------------------------------------------------------------------
    def shards(self, table: str) -> list[str]:
        return sorted(glob.glob(os.path.join(self.root, table, "*.parquet")))

    def verify(self, mode: str = "auto") -> None:
        """The integrity gate on the folder (DatasetIntegrityError); a writer accepts its unlisted shards."""
        if self.readonly or os.path.exists(os.path.join(self.root, MANIFEST)):
            verify_folder(self.root, mode, allow_unlisted=not self.readonly, layout="collection")
        else:  # a writer's folder before its first manifest: every shard is unlisted
            verify_folder(self.root, mode, allow_unlisted=True, layout="collection")

    def read(self, table: str, columns: list[str] | None = None) -> pa.Table:
        paths = self.shards(table)
        if not paths:
            return TABLES[table].empty_table().select(columns) if columns else TABLES[table].empty_table()
        self.verify()
        return concat_shards(table, paths, columns)

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
    def _tables(self) -> list[str]:
        return [*TABLES, *self._extra_tables]

    def _require_writable(self) -> None:
        if self.readonly:
            raise PermissionError(f"{self.root}: opened read-only")

    def _existing_manifest(self) -> dict:
        try:
            with open(os.path.join(self.root, MANIFEST)) as handle:
                manifest = json.load(handle)
        except (OSError, ValueError):
            return {}
        return manifest if isinstance(manifest, dict) else {}

    def _remove_partials(self) -> None:
        """Left-overs of a killed write: never complete, never referenced."""
        for table in TABLES:
            for path in glob.glob(os.path.join(self.root, table, "*" + PARTIAL_SUFFIX)):
                os.remove(path)


def _shard_entry(path: str, name: str) -> dict:
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as exc:  # noqa: BLE001  (never record a file that is not Parquet)
        raise DatasetIntegrityError(f"{path}: not a readable Parquet file ({type(exc).__name__}: "
                                    f"{one_line(exc)}); "
                                    "restore or remove it") from None
    return {"file": name, "rows": rows, "bytes": os.path.getsize(path), "sha256": file_sha256(path)}


def sha256_of(path: str) -> str:
    return file_sha256(path)
