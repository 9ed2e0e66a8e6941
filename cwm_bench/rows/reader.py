"""Read a table from either dataset layout, through one integrity gate.

- a collection folder (`cwm-bench collect` output): DIR/manifest.json, DIR/<table>/part-*.parquet
- a release folder (Hugging Face Hub layout): DIR/README.md, DIR/checksums.sha256,
  DIR/data/<table>/<split>-*-of-*.parquet

**The gate** (`verify_folder`, run by `table_files` and `read_table`, so by every reader: release,
train, evaluate, remeasure, merge, noise, the card) refuses a folder whose files disagree with what it
records about them, before any row is read:

- every data file must be listed in the folder's record (manifest.json, or checksums.sha256), and
  every listed file must exist;
- its size (manifest.json `bytes`; for a release the card's per-config `download_size`), its row count
  (manifest.json `rows`) and, in `full` mode, its sha256 must match the record;
- every shard must be readable Parquet with exactly the schema's columns and types (rows/schema.py;
  a release's records add the split columns). The one exception is the documented upgrade: a shard of
  schema 1 may lack the columns of ADDED_COLUMNS, which then read as nulls. Shards of other tables
  (`noise`) must all share one schema. Nothing is ever null-filled across shards.

Modes: `full` hashes every file; `size` checks sizes and row counts only (for big datasets); `auto`
(the readers' default) is `full` when the folder's data files total at most FULL_HASH_BYTES, else
`size`. CWM_BENCH_VERIFY=full|size overrides `auto`. `validate`, `release`, `publish` and the digest
`evaluate` writes into a result always use `full`. Hashes are cached per process by file identity
(inode, size, mtime, ctime), so a command that reads a folder several times hashes each file once.

A failure raises DatasetIntegrityError (a ValueError; deliberately not a NotADatasetError, which
means "no such table/folder"): one line naming the file and the problem, and how many more there are.

Collection folders carry a `noise` table (written by `cwm-bench noise --into`) that manifest.json
does not list unless `DatasetStore.record_table("noise")` recorded it: such a table is checked for
readability and one schema, but has no checksum.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from cwm_bench.rows.schema import ADDED_COLUMNS, TABLES, upgrade

MANIFEST = "manifest.json"
CHECKSUMS = "checksums.sha256"
CARD = "README.md"
MODES = ("full", "size", "auto")
VERIFY_ENV = "CWM_BENCH_VERIFY"
FULL_HASH_BYTES = 256 * 2**20  # `auto` hashes folders up to this size in full (hashlib: ~1 GB/s)
_BUSY_RETRY_S = 5.0  # a reader of a folder that a collector is writing waits this long for the manifest


class NotADatasetError(ValueError):
    pass


class DatasetIntegrityError(ValueError):
    """A dataset folder's files disagree with its manifest/checksums or with the schema. The message is
    one line: the file, the problem, and how many more problems `cwm-bench validate` would list.

    Not a NotADatasetError on purpose: code that reads an optional table (`except NotADatasetError:
    no noise table`) must not mistake a damaged folder for a missing table."""


@dataclass(frozen=True)
class Recorded:
    """What a folder records about one data file."""

    sha256: str
    bytes: int | None = None
    rows: int | None = None


@dataclass(frozen=True)
class Issue:
    """One problem the gate found. `kind`: listing, size, checksum, rows, unreadable or schema."""

    rel: str  # path relative to the folder
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.rel}: {self.message}"


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


def _tables_on_disk(root: str, layout: str) -> list[str]:
    base = root if layout == "collection" else os.path.join(root, "data")
    if not os.path.isdir(base):
        return []
    return sorted(d for d in os.listdir(base)
                  if not d.startswith(".") and glob.glob(os.path.join(base, d, "*.parquet")))


def expected_schema(layout: str, table: str) -> pa.Schema | None:
    """The schema every shard of `table` must have (None: a table outside rows/schema.py, e.g. noise)."""
    if table not in TABLES:
        return None
    schema = TABLES[table]
    if layout == "release" and table == "records":
        from cwm_bench.splits import SPLIT_COLUMNS  # a release's records carry one split column per scheme

        for column in SPLIT_COLUMNS.values():
            schema = schema.append(pa.field(column, pa.string()))
    return schema


def schema_problems(table: str, schema: pa.Schema, expected: pa.Schema) -> list[str]:
    """How a shard's Arrow schema departs from `expected`; [] when it matches. Columns of ADDED_COLUMNS
    may be missing from a shard of schema 1 (metadata `cwm_bench.schema_version`, absent = 1)."""
    version = (schema.metadata or {}).get(b"cwm_bench.schema_version", b"1")
    optional = ADDED_COLUMNS.get(table, ()) if version == b"1" else ()
    problems = []
    unknown = [n for n in schema.names if n not in expected.names]
    missing = [n for n in expected.names if n not in schema.names and n not in optional]
    if unknown:
        problems.append(f"unknown column(s) {unknown}")
    if missing:
        problems.append(f"missing column(s) {missing}")
    for field in expected:
        if field.name in schema.names and not schema.field(field.name).type.equals(field.type):
            problems.append(f"column {field.name!r} has type {schema.field(field.name).type}, expected {field.type}")
    return problems


# -- what a folder records -------------------------------------------------------------------------
def recorded_files(root: str, layout: str | None = None) -> tuple[dict[str, Recorded], set[str], list[Issue]]:
    """(relative path -> Recorded, the tables the record covers, problems reading the record itself).

    A collection's record is manifest.json (it covers the schema's tables and any table it lists); a
    release's is checksums.sha256 (it covers every table)."""
    layout = layout or layout_of(root)
    if layout == "collection":
        return _manifest_record(root)
    return _checksums_record(root)


def _manifest_record(root: str) -> tuple[dict[str, Recorded], set[str], list[Issue]]:
    path = os.path.join(root, MANIFEST)
    covered = set(TABLES)
    if not os.path.exists(path):
        return {}, covered, [Issue(MANIFEST, "listing", "missing (not a cwm-bench dataset folder?)")]
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        return {}, covered, [Issue(MANIFEST, "listing", f"unreadable ({_one_line(exc)})")]
    shards = manifest.get("shards") if isinstance(manifest, dict) else None
    if not isinstance(shards, dict):
        return {}, covered, [Issue(MANIFEST, "listing", "no `shards` (not written by cwm-bench; "
                                                        "`cwm-bench validate --rebuild-manifest` rewrites it)")]
    record: dict[str, Recorded] = {}
    issues = []
    for table, entries in shards.items():
        covered.add(table)
        for i, entry in enumerate(entries if isinstance(entries, list) else [None]):
            try:
                record[f"{table}/{entry['file']}"] = Recorded(str(entry["sha256"]), entry.get("bytes"),
                                                              entry.get("rows"))
            except (TypeError, KeyError):
                issues.append(Issue(MANIFEST, "listing", f"shards.{table}[{i}] is not "
                                                         "{file, rows, sha256}"))
    return record, covered, issues


def _checksums_record(root: str) -> tuple[dict[str, Recorded], set[str], list[Issue]]:
    covered = set(_tables_on_disk(root, "release")) | set(TABLES)
    path = os.path.join(root, CHECKSUMS)
    if not os.path.exists(path):
        return {}, covered, [Issue(CHECKSUMS, "listing", "missing (every release lists its data files "
                                                         "there; rebuild the release with `cwm-bench release`)")]
    record: dict[str, Recorded] = {}
    issues = []
    with open(path, errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            digest, sep, rel = line.rstrip("\n").partition("  ")
            if not sep or len(digest) != 64 or not rel:
                issues.append(Issue(CHECKSUMS, "listing", f"line {number} is not `<sha256>  <path>`"))
                continue
            record[rel] = Recorded(digest)
    return record, covered, issues


def _card_sizes(root: str) -> dict[str, tuple[int | None, int | None]]:
    """config -> (download_size, num_examples) from the card's front matter; {} without a card."""
    path = os.path.join(root, CARD)
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError:
        return {}
    if not text.startswith("---") or text.count("---") < 2:
        return {}
    import yaml

    try:
        front = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return {}
    out = {}
    for info in front.get("dataset_info") or [] if isinstance(front, dict) else []:
        if isinstance(info, dict) and "config_name" in info:
            splits = info.get("splits") or [{}]
            out[info["config_name"]] = (info.get("download_size"), splits[0].get("num_examples"))
    return out


# -- hashing and footers, cached by file identity --------------------------------------------------
_HASHES: dict[tuple, str] = {}
_FOOTERS: dict[tuple, tuple[pa.Schema, int] | str] = {}
_VERIFIED: dict[tuple, tuple] = {}
_CACHE_LIMIT = 200_000


def _identity(path: str) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_sha256(path: str) -> str:
    """The file's real sha256 (cached in this process until the file changes)."""
    key = _identity(path)
    if key not in _HASHES:
        if len(_HASHES) > _CACHE_LIMIT:
            _HASHES.clear()
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def remember_sha256(path: str, digest: str) -> None:
    """Tell the cache the sha256 of a file just written (its writer hashed it already)."""
    _HASHES[_identity(path)] = digest


def _footer(path: str) -> tuple[pa.Schema, int] | str:
    """(Arrow schema, rows) of a Parquet file, or the one-line reason it is unreadable."""
    key = _identity(path)
    if key not in _FOOTERS:
        if len(_FOOTERS) > _CACHE_LIMIT:
            _FOOTERS.clear()
        try:
            parquet = pq.ParquetFile(path)
            _FOOTERS[key] = (parquet.schema_arrow, parquet.metadata.num_rows)
        except Exception as exc:  # noqa: BLE001  (any unreadable file is a problem, never a traceback)
            _FOOTERS[key] = f"not a readable Parquet file ({type(exc).__name__}: {_one_line(exc)})"
    return _FOOTERS[key]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the gate --------------------------------------------------------------------------------------
def _resolve(mode: str, total_bytes: int) -> str:
    if mode not in MODES:
        raise ValueError(f"verify mode {mode!r}; valid: {', '.join(MODES)}")
    if mode != "auto":
        return mode
    forced = os.environ.get(VERIFY_ENV, "").strip().lower()
    if forced in ("full", "size"):
        return forced
    return "full" if total_bytes <= FULL_HASH_BYTES else "size"


def inspect_folder(root: str, mode: str = "full", allow_unlisted: bool = False,
                   layout: str | None = None) -> list[Issue]:
    """Every problem of the gate for the folder (see the module docstring); [] when it holds.

    `allow_unlisted`: shards of covered tables that the record does not list are accepted (still
    read and schema-checked): how the folder's own writer (DatasetStore) reads it, since a write
    killed between the shard and the manifest leaves one such shard, listed by its next write."""
    layout = layout or layout_of(root)
    record, covered, issues = recorded_files(root, layout)
    if issues and not record:
        allow_unlisted = True  # one problem, not one per file: the record itself is missing or unreadable
    card_sizes = _card_sizes(root) if layout == "release" else {}
    on_disk = {table: data_files(root, table, layout) for table in sorted(set(_tables_on_disk(root, layout)) | covered)}
    prefix = "" if layout == "collection" else "data/"
    source = MANIFEST if layout == "collection" else CHECKSUMS
    total = sum(os.path.getsize(p) for paths in on_disk.values() for p in paths if os.path.exists(p))
    mode = _resolve(mode, total)
    seen: set[str] = set()
    for table, paths in on_disk.items():
        expected = expected_schema(layout, table)
        first: tuple[str, pa.Schema] | None = None
        table_bytes = table_rows = 0
        for path in paths:
            rel = f"{prefix}{table}/{os.path.basename(path)}"
            seen.add(rel)
            entry = record.get(rel)
            size = os.path.getsize(path)
            table_bytes += size
            if entry is None and table in covered and not allow_unlisted:
                hint = " (run `cwm-bench validate --rebuild-manifest`)" if layout == "collection" else ""
                issues.append(Issue(rel, "listing", f"not listed in {source}{hint}"))
            if size == 0:
                issues.append(Issue(rel, "size", "empty file"))
            elif entry is not None and entry.bytes is not None and entry.bytes != size:
                issues.append(Issue(rel, "size", f"{size} bytes, {source} records {entry.bytes}"))
            if entry is not None and mode == "full" and file_sha256(path) != entry.sha256:
                issues.append(Issue(rel, "checksum", "checksum differs from manifest.json" if layout == "collection"
                                    else f"sha256 does not match {CHECKSUMS}"))
            footer = _footer(path)
            if isinstance(footer, str):
                issues.append(Issue(rel, "unreadable", footer))
                continue
            schema, rows = footer
            table_rows += rows
            if entry is not None and entry.rows is not None and entry.rows != rows:
                issues.append(Issue(rel, "rows", f"{rows} rows, {source} records {entry.rows}"))
            if expected is not None:
                issues.extend(Issue(rel, "schema", p) for p in schema_problems(table, schema, expected))
            elif first is None:
                first = (rel, schema)
            elif not _same_columns(schema, first[1]):
                issues.append(Issue(rel, "schema", f"columns {_describe(schema)} differ from {first[0]}'s "
                                                   f"{_describe(first[1])}"))
        if mode == "size" and table in card_sizes and paths:
            want_bytes, want_rows = card_sizes[table]
            if want_bytes is not None and want_bytes != table_bytes:
                issues.append(Issue(f"{prefix}{table}", "size", f"{table_bytes} bytes, the card records {want_bytes}"))
            if want_rows is not None and want_rows != table_rows:
                issues.append(Issue(f"{prefix}{table}", "rows", f"{table_rows} rows, the card records {want_rows}"))
    if layout == "release":  # anything else under data/ is part of the release too
        for folder, _, names in os.walk(os.path.join(root, "data")):
            for name in sorted(names):
                rel = os.path.relpath(os.path.join(folder, name), root)
                if rel in seen:
                    continue
                seen.add(rel)
                if rel not in record:
                    issues.append(Issue(rel, "listing", f"not listed in {source}"))
                elif mode == "full" and file_sha256(os.path.join(root, rel)) != record[rel].sha256:
                    issues.append(Issue(rel, "checksum", f"sha256 does not match {CHECKSUMS}"))
    for rel in sorted(set(record) - seen):
        issues.append(Issue(rel, "listing", f"listed in {source} but missing"))
    return issues


def _same_columns(a: pa.Schema, b: pa.Schema) -> bool:
    return a.names == b.names and all(x.type.equals(y.type) for x, y in zip(a, b, strict=True))


def _describe(schema: pa.Schema) -> str:
    return "[" + ", ".join(f"{f.name}: {f.type}" for f in schema) + "]"


def _fingerprint(root: str, layout: str) -> tuple:
    names = [os.path.join(root, MANIFEST if layout == "collection" else CHECKSUMS), os.path.join(root, CARD)]
    if layout == "release":
        names += sorted(os.path.join(d, f) for d, _, files in os.walk(os.path.join(root, "data")) for f in files)
    else:
        for table in _tables_on_disk(root, layout):
            names += data_files(root, table, layout)
    out = []
    for name in names:
        try:
            out.append(_identity(name))
        except OSError:
            out.append((name, None))
    return tuple(out)


def _writer_active(root: str) -> bool:
    """A cwm-bench writer holds the folder's lock (its manifest may trail its newest shard briefly)."""
    try:
        fd = os.open(os.path.join(root, ".lock"), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def verify_folder(root: str, mode: str = "auto", allow_unlisted: bool = False, layout: str | None = None) -> None:
    """Raise DatasetIntegrityError (one line) unless the folder passes the gate; cached until it changes."""
    layout = layout or layout_of(root)
    key = (os.path.realpath(root), mode, allow_unlisted, layout, os.environ.get(VERIFY_ENV, ""))
    deadline = time.monotonic() + _BUSY_RETRY_S
    while True:
        fingerprint = _fingerprint(root, layout)
        if _VERIFIED.get(key) == fingerprint:
            return
        issues = inspect_folder(root, mode, allow_unlisted, layout)
        if not issues:
            _VERIFIED[key] = fingerprint
            return
        # A folder being written: the manifest follows each new shard within milliseconds.
        if (layout == "collection" and not allow_unlisted and all(i.kind == "listing" for i in issues)
                and time.monotonic() < deadline and _writer_active(root)):
            time.sleep(0.1)
            continue
        raise DatasetIntegrityError(describe_issues(root, issues))


def describe_issues(root: str, issues: list[Issue]) -> str:
    first = issues[0]
    more = f" (+{len(issues) - 1} more; `cwm-bench validate {root}` lists them)" if len(issues) > 1 else ""
    return f"{os.path.join(root, first.rel)}: {first.message}{more}"


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
                                        f"{_one_line(exc)})") from None
        parts.append(part if not parts else part.select(parts[0].column_names))
    try:
        return pa.concat_tables(parts)
    except pa.ArrowInvalid as exc:
        raise DatasetIntegrityError(f"{files[0]}: its shards disagree on the columns ({_one_line(exc)})") from None


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
