"""The integrity gate: a dataset folder whose files disagree with what it records about them is
refused before any row is read.

`verify_folder` runs the gate; rows/reader.py runs it in `table_files` and `read_table`, so every
reader does (release, train, evaluate, remeasure, merge, noise, the card), and a DatasetStore runs it
before its reads. `inspect_folder` lists every problem (what `cwm-bench validate` prints).

What is checked, and where:

- the record itself (`recorded_files`): a collection's is manifest.json (`shards`: file, rows, bytes,
  sha256 per shard; it covers the schema's tables and any table it lists), a release's is
  checksums.sha256 (`<sha256>  <path>` lines; it covers every table). A missing or unreadable record is
  one problem, not one per file;
- every data file (`_shard_issues`): listed in the record (unless `allow_unlisted`), non-empty, of the
  recorded size (manifest.json `bytes`) and, in `full` mode, the recorded sha256; readable Parquet with
  the recorded row count (manifest.json `rows`) and exactly the schema's columns and types
  (`expected_schema`, `schema_problems`: rows/schema.py, and for a release's records its split
  columns). The one exception is the documented upgrade: a shard of schema 1 may lack the columns of
  ADDED_COLUMNS, which then read as nulls. Shards of other tables (`noise`) must all share one schema.
  Nothing is ever null-filled across shards;
- a release, besides (`_card_size_issues`, `_other_data_issues`): in `size` mode each table's total
  size and row count against the card's per-config `download_size` and `num_examples`; every other file
  under data/ listed in checksums.sha256 and, in `full` mode, matching its sha256;
- every listed file exists (`_missing_issues`).

Elsewhere: rows/reader.py `concat_shards` refuses a shard unreadable past its footer; rows/store.py
refuses to record an unreadable shard; `cwm-bench validate` adds the row rules (rows/rules.py), a
release's card and split columns, and trace replays.

Modes: `full` hashes every file; `size` checks sizes and row counts only (for big datasets); `auto`
(the readers' default) is `full` when the folder's data files total at most FULL_HASH_BYTES, else
`size`. CWM_BENCH_VERIFY=full|size overrides `auto`. `validate`, `release`, `publish` and the digest
`evaluate` writes into a result always use `full`. Hashes and Parquet footers are cached per process by
file identity (inode, size, mtime, ctime), and a passing folder by the identity of its files, so a
command that reads a folder several times hashes each file once.

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

from cwm_bench.rows.schema import ADDED_COLUMNS, TABLES

MANIFEST = "manifest.json"
CHECKSUMS = "checksums.sha256"
CARD = "README.md"
MODES = ("full", "size", "auto")
VERIFY_ENV = "CWM_BENCH_VERIFY"
FULL_HASH_BYTES = 256 * 2**20  # `auto` hashes folders up to this size in full (hashlib: ~1 GB/s)
_BUSY_RETRY_S = 5.0  # a reader of a folder that a collector is writing waits this long for the manifest


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


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the layout (rows/reader.py; imported when called, since reader imports this module) -----------
def _layout(root: str, layout: str | None) -> str:
    if layout:
        return layout
    from cwm_bench.rows.reader import layout_of

    return layout_of(root)


def _data_files(root: str, table: str, layout: str) -> list[str]:
    from cwm_bench.rows.reader import data_files

    return data_files(root, table, layout)


def _tables_on_disk(root: str, layout: str) -> list[str]:
    base = root if layout == "collection" else os.path.join(root, "data")
    if not os.path.isdir(base):
        return []
    return sorted(d for d in os.listdir(base)
                  if not d.startswith(".") and glob.glob(os.path.join(base, d, "*.parquet")))


# -- the schema a shard must have ------------------------------------------------------------------
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


def _same_columns(a: pa.Schema, b: pa.Schema) -> bool:
    return a.names == b.names and all(x.type.equals(y.type) for x, y in zip(a, b, strict=True))


def _describe(schema: pa.Schema) -> str:
    return "[" + ", ".join(f"{f.name}: {f.type}" for f in schema) + "]"


# -- what a folder records -------------------------------------------------------------------------
def recorded_files(root: str, layout: str | None = None) -> tuple[dict[str, Recorded], set[str], list[Issue]]:
    """(relative path -> Recorded, the tables the record covers, problems reading the record itself).

    A collection's record is manifest.json (it covers the schema's tables and any table it lists); a
    release's is checksums.sha256 (it covers every table)."""
    if _layout(root, layout) == "collection":
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
        return {}, covered, [Issue(MANIFEST, "listing", f"unreadable ({one_line(exc)})")]
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


def card_front_matter(text: str) -> object:
    """The parsed YAML front matter of a data card (the text between its first two `---`); {} when the
    card has none or it is empty. Raises yaml.YAMLError when it is not YAML."""
    import yaml

    if not text.startswith("---") or text.count("---") < 2:
        return {}
    return yaml.safe_load(text.split("---", 2)[1]) or {}


def _card_sizes(root: str) -> dict[str, tuple[int | None, int | None]]:
    """config -> (download_size, num_examples) from the card's front matter; {} without a card."""
    import yaml

    try:
        with open(os.path.join(root, CARD), errors="replace") as handle:
            text = handle.read()
    except OSError:
        return {}
    try:
        front = card_front_matter(text)
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
            _FOOTERS[key] = f"not a readable Parquet file ({type(exc).__name__}: {one_line(exc)})"
    return _FOOTERS[key]


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


@dataclass(frozen=True)
class _Folder:
    """One folder under inspection: what its files are checked against."""

    root: str
    layout: str
    mode: str  # resolved: full or size
    record: dict[str, Recorded]
    covered: set[str]
    allow_unlisted: bool

    @property
    def source(self) -> str:
        return MANIFEST if self.layout == "collection" else CHECKSUMS

    def rel(self, table: str, path: str) -> str:
        return f"{'' if self.layout == 'collection' else 'data/'}{table}/{os.path.basename(path)}"


def inspect_folder(root: str, mode: str = "full", allow_unlisted: bool = False,
                   layout: str | None = None) -> list[Issue]:
    """Every problem of the gate for the folder (see the module docstring); [] when it holds.

    `allow_unlisted`: shards of covered tables that the record does not list are accepted (still
    read and schema-checked): how the folder's own writer (DatasetStore) reads it, since a write
    killed between the shard and the manifest leaves one such shard, listed by its next write."""
    layout = _layout(root, layout)
    record, covered, issues = recorded_files(root, layout)
    if issues and not record:
        allow_unlisted = True  # one problem, not one per file: the record itself is missing or unreadable
    card_sizes = _card_sizes(root) if layout == "release" else {}
    on_disk = {table: _data_files(root, table, layout)
               for table in sorted(set(_tables_on_disk(root, layout)) | covered)}
    total = sum(os.path.getsize(p) for paths in on_disk.values() for p in paths if os.path.exists(p))
    folder = _Folder(root, layout, _resolve(mode, total), record, covered, allow_unlisted)
    for table, paths in on_disk.items():
        table_issues, table_bytes, table_rows = _shard_issues(folder, table, paths)
        issues += table_issues
        if folder.mode == "size" and table in card_sizes and paths:
            issues += _card_size_issues(f"data/{table}", card_sizes[table], table_bytes, table_rows)
    seen = {folder.rel(table, path) for table, paths in on_disk.items() for path in paths}
    if layout == "release":
        issues += _other_data_issues(folder, seen)
    return issues + _missing_issues(folder, seen)


def _shard_issues(folder: _Folder, table: str, paths: list[str]) -> tuple[list[Issue], int, int]:
    """The problems of one table's shards, their total size and the rows of the readable ones."""
    expected = expected_schema(folder.layout, table)
    first: tuple[str, pa.Schema] | None = None
    issues: list[Issue] = []
    table_bytes = table_rows = 0
    for path in paths:
        rel = folder.rel(table, path)
        entry = folder.record.get(rel)
        size = os.path.getsize(path)
        table_bytes += size
        if entry is None and table in folder.covered and not folder.allow_unlisted:
            hint = " (run `cwm-bench validate --rebuild-manifest`)" if folder.layout == "collection" else ""
            issues.append(Issue(rel, "listing", f"not listed in {folder.source}{hint}"))
        if size == 0:
            issues.append(Issue(rel, "size", "empty file"))
        elif entry is not None and entry.bytes is not None and entry.bytes != size:
            issues.append(Issue(rel, "size", f"{size} bytes, {folder.source} records {entry.bytes}"))
        issues += _checksum_issues(folder, rel, path, entry)
        footer = _footer(path)
        if isinstance(footer, str):
            issues.append(Issue(rel, "unreadable", footer))
            continue
        schema, rows = footer
        table_rows += rows
        if entry is not None and entry.rows is not None and entry.rows != rows:
            issues.append(Issue(rel, "rows", f"{rows} rows, {folder.source} records {entry.rows}"))
        if expected is not None:
            issues.extend(Issue(rel, "schema", p) for p in schema_problems(table, schema, expected))
        elif first is None:
            first = (rel, schema)
        elif not _same_columns(schema, first[1]):
            issues.append(Issue(rel, "schema", f"columns {_describe(schema)} differ from {first[0]}'s "
                                               f"{_describe(first[1])}"))
    return issues, table_bytes, table_rows


def _checksum_issues(folder: _Folder, rel: str, path: str, entry: Recorded | None) -> list[Issue]:
    """In `full` mode: the file's sha256 against the record (nothing to check for an unlisted file)."""
    if entry is None or folder.mode != "full" or file_sha256(path) == entry.sha256:
        return []
    return [Issue(rel, "checksum", "checksum differs from manifest.json" if folder.layout == "collection"
                  else f"sha256 does not match {CHECKSUMS}")]


def _card_size_issues(rel: str, card: tuple[int | None, int | None], table_bytes: int,
                      table_rows: int) -> list[Issue]:
    """A release table in `size` mode: its size and rows against the card's download_size and num_examples."""
    want_bytes, want_rows = card
    issues = []
    if want_bytes is not None and want_bytes != table_bytes:
        issues.append(Issue(rel, "size", f"{table_bytes} bytes, the card records {want_bytes}"))
    if want_rows is not None and want_rows != table_rows:
        issues.append(Issue(rel, "rows", f"{table_rows} rows, the card records {want_rows}"))
    return issues


def _other_data_issues(folder: _Folder, seen: set[str]) -> list[Issue]:
    """A release: every other file under data/ is part of it too (listed, and its sha256 in `full` mode).
    Adds those files to `seen`."""
    issues = []
    for directory, _, names in os.walk(os.path.join(folder.root, "data")):
        for name in sorted(names):
            rel = os.path.relpath(os.path.join(directory, name), folder.root)
            if rel in seen:
                continue
            seen.add(rel)
            if rel not in folder.record:
                issues.append(Issue(rel, "listing", f"not listed in {folder.source}"))
            else:
                issues += _checksum_issues(folder, rel, os.path.join(folder.root, rel), folder.record[rel])
    return issues


def _missing_issues(folder: _Folder, seen: set[str]) -> list[Issue]:
    """Every file the record lists that is not on disk."""
    return [Issue(rel, "listing", f"listed in {folder.source} but missing")
            for rel in sorted(set(folder.record) - seen)]


def _fingerprint(root: str, layout: str) -> tuple:
    names = [os.path.join(root, MANIFEST if layout == "collection" else CHECKSUMS), os.path.join(root, CARD)]
    if layout == "release":
        names += sorted(os.path.join(d, f) for d, _, files in os.walk(os.path.join(root, "data")) for f in files)
    else:
        for table in _tables_on_disk(root, layout):
            names += _data_files(root, table, layout)
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
    layout = _layout(root, layout)
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
    """The one-line message of DatasetIntegrityError: the first problem, and how many more there are."""
    first = issues[0]
    more = f" (+{len(issues) - 1} more; `cwm-bench validate {root}` lists them)" if len(issues) > 1 else ""
    return f"{os.path.join(root, first.rel)}: {first.message}{more}"
