"""Turn a collection folder into a release folder in the Hugging Face Hub layout.

    DIR/README.md                                  data card, generated from the data (cwm_bench.data_cards.card)
    DIR/checksums.sha256                           `sha256sum -c` format, every data file
    DIR/data/workloads/train-00000-of-00001.parquet
    DIR/data/records/train-0000i-of-0000n.parquet  records + split columns, <= 50,000 rows a shard
    DIR/data/noise/train-00000-of-00001.parquet    re-measurements, when the source has them

A release holds one hardware only: latencies of two CPU models are not comparable.

Bad input never becomes a release: the source passes the integrity gate in full (every shard listed in
its manifest with the right size, rows, sha256, columns and types; rows/integrity.py), and its rows the
rules of `rows/rules.py` (an ok record has a positive latency, its timings and its features), before
anything is written. Every refusal is a ReleaseError: one line naming the file and the problem.
"""

from __future__ import annotations

import json
import os
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cwm_bench.rows.integrity import DatasetIntegrityError, describe_issues, file_sha256, inspect_folder
from cwm_bench.rows.reader import NotADatasetError, concat_shards, read_table, table_files
from cwm_bench.rows.rules import record_problems, workload_problems
from cwm_bench.rows.schema import RECORDS, SCHEMA_VERSION
from cwm_bench.splits import SPLIT_COLUMNS, assign_splits

RECORDS_SHARD_ROWS = 50_000
# Small row groups keep the Hub's dataset viewer and streaming readers from loading a whole shard
# (a record carries its features, actions and trace: tens of kB).
ROW_GROUP_ROWS = 1_000
CHECKSUMS = "checksums.sha256"
RELEASE_METADATA_KEY = b"cwm_bench.release"


class ReleaseError(ValueError):
    """A release cannot be built from this input; the message says why and what to do."""


def shard_name(index: int, count: int, split: str = "train") -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def build_release(source_dir: str, out_dir: str, name: str, hw_id: str | None = None, seed: int = 0,
                  min_ok_per_task: int = 0) -> dict:
    """Build the release of `source_dir` (one hardware) into `out_dir`; returns the card's stats.

    Tasks with fewer than `min_ok_per_task` ok records (e.g. a design space with fewer distinct
    programs) are left out, and the card names them.

    `out_dir` is replaced atomically: it is built in a temp folder beside it and renamed into place,
    so a failure leaves the previous release (or nothing) behind, never a half-written one.
    """
    _check_paths(source_dir, out_dir)
    try:
        records = _read_checked(source_dir, "records")
        workloads = _read_checked(source_dir, "workloads")
    except (NotADatasetError, DatasetIntegrityError) as exc:
        raise ReleaseError(str(exc)) from exc
    missing = [c for c in RECORDS.names if c not in records.column_names]
    if missing:
        raise ReleaseError(f"{source_dir}: records lack the column(s) {', '.join(missing)}")
    records = records.drop_columns([c for c in SPLIT_COLUMNS.values() if c in records.column_names])
    hw_id = _choose_hw_id(source_dir, records, hw_id)
    records = records.filter(pc.equal(records["hw_id"], hw_id))
    duplicates = records.num_rows - len(pc.unique(records["record_id"]))
    if duplicates:
        raise ReleaseError(f"{source_dir}: {duplicates} duplicate record_id(s) for hw_id {hw_id}; "
                           "run `cwm-bench validate` on it")
    records, excluded = _drop_small_tasks(records, workloads, min_ok_per_task)
    # Sorted so that the same data always gives byte-identical shards, whatever the collection order.
    records = records.sort_by([("workload_id", "ascending"), ("record_id", "ascending")])
    workloads = _tasks_with_records(workloads, records)
    try:
        records = assign_splits(records, workloads, seed=seed)
    except ValueError as exc:
        raise ReleaseError(f"{source_dir}: {exc}") from exc
    noise = _optional_noise(source_dir, records)

    release_info = {"name": name, "seed": seed, "hw_id": hw_id, "min_ok_per_task": min_ok_per_task,
                    "excluded_tasks": excluded}
    metadata = {RELEASE_METADATA_KEY: json.dumps(release_info).encode(),
                b"cwm_bench.schema_version": SCHEMA_VERSION.encode()}
    out_dir = os.path.abspath(out_dir)
    temp = _sibling(out_dir, "tmp")
    try:
        os.makedirs(temp)
        files = _write_table(temp, "workloads", workloads, metadata, len(workloads) or 1)
        files += _write_table(temp, "records", records, metadata, RECORDS_SHARD_ROWS)
        if noise is not None:  # its own metadata (how it was re-measured) travels with it
            files += _write_table(temp, "noise", noise, {**(noise.schema.metadata or {}), **metadata},
                                  max(noise.num_rows, 1))
        _write_checksums(temp, files)
        from cwm_bench.data_cards.card import write_card

        stats = write_card(temp, name)
        issues = inspect_folder(temp, "full", layout="release")  # what was written reads back as written
        if issues:
            raise ReleaseError(describe_issues(temp, issues))
        _replace_dir(temp, out_dir)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    stats["folder_bytes"] = folder_bytes(out_dir)
    return stats


def folder_bytes(root: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(root) for f in names)


def verify_checksums(release_dir: str) -> list[str]:
    """Problems with DIR/checksums.sha256 (missing, mismatching or unlisted data files) and with the
    data files themselves (unreadable, wrong columns or types); [] when the release holds."""
    return [str(issue) for issue in inspect_folder(release_dir, "full", layout="release")]


def write_checksums(release_dir: str) -> None:
    """(Re)write DIR/checksums.sha256 from every file under DIR/data (after changing one on purpose)."""
    files = [os.path.relpath(os.path.join(d, f), release_dir)
             for d, _, names in os.walk(os.path.join(release_dir, "data")) for f in names]
    _write_checksums(release_dir, files)


# -- helpers ---------------------------------------------------------------------------------------
def _read_checked(source_dir: str, table: str) -> pa.Table:
    """`table` of the source after the full gate, every shard's rows checked (ReleaseError, one line)."""
    files = table_files(source_dir, table, verify="full")
    if not files:
        raise ReleaseError(f"{source_dir}: no {table!r} table")
    check = record_problems if table == "records" else workload_problems
    parts, problems = [], []
    for path in files:
        part = concat_shards(table, [path])
        problems += [f"{path} row {row}: {message}" for row, message in check(part)]
        parts.append(part)
    if problems:
        more = f" (+{len(problems) - 1} more; `cwm-bench validate {source_dir}` lists them)" if len(problems) > 1 \
            else ""
        raise ReleaseError(f"{problems[0]}{more}")
    return pa.concat_tables([p.select(parts[0].column_names) for p in parts])


def _check_paths(source_dir: str, out_dir: str) -> None:
    source, out = os.path.realpath(source_dir), os.path.realpath(out_dir)
    if out == source or out.startswith(source + os.sep) or source.startswith(out + os.sep):
        raise ReleaseError(f"--out {out_dir} must be outside the source folder {source_dir} (and not contain it)")
    if os.path.exists(out) and os.listdir(out) and not (
            os.path.exists(os.path.join(out, CHECKSUMS)) and os.path.isdir(os.path.join(out, "data"))):
        raise ReleaseError(f"{out_dir} exists and is not a release folder; refusing to replace it")


def _choose_hw_id(source_dir: str, records: pa.Table, hw_id: str | None) -> str:
    groups = records.select(["hw_id", "hw_name"]).group_by(["hw_id", "hw_name"]).aggregate([([], "count_all")])
    counts = {h: (name, n) for h, name, n in zip(*(groups[c].to_pylist() for c in ("hw_id", "hw_name", "count_all")),
                                                 strict=True)}
    if not counts:
        raise ReleaseError(f"{source_dir}: no records")
    listing = "; ".join(f"{h} ({name}, {n} records)" for h, (name, n) in sorted(counts.items()))
    if hw_id is None:
        if len(counts) > 1:
            raise ReleaseError(f"{source_dir} holds records of {len(counts)} hardware ids: {listing}. A release "
                               "holds one CPU model; choose it with --hw-id")
        return next(iter(counts))
    if hw_id not in counts:
        raise ReleaseError(f"{source_dir}: no records for hw_id {hw_id}; it holds {listing}")
    return hw_id


def _drop_small_tasks(records: pa.Table, workloads: pa.Table, min_ok: int) -> tuple[pa.Table, list[dict]]:
    """Records of tasks with at least `min_ok` ok records; and the tasks left out, with their counts."""
    if min_ok <= 0:
        return records, []
    ok = records.filter(pc.equal(records["status"], "ok"))["workload_id"].to_pylist()
    counts: dict[str, int] = dict.fromkeys(records["workload_id"].to_pylist(), 0)
    for wid in ok:
        counts[wid] += 1
    names = dict(zip(workloads["workload_id"].to_pylist(), workloads["task_name"].to_pylist(), strict=True))
    small = sorted(w for w, n in counts.items() if n < min_ok)
    if len(small) == len(counts):
        raise ReleaseError(f"no task has {min_ok} ok records (most: {max(counts.values(), default=0)})")
    kept = records.filter(pc.invert(pc.is_in(records["workload_id"], value_set=pa.array(small, pa.string()))))
    return kept, [{"workload_id": w, "task_name": names.get(w, "?"), "ok": counts[w]} for w in small]


def _tasks_with_records(workloads: pa.Table, records: pa.Table) -> pa.Table:
    """One row per workload that has records (a collection may list a task twice after a resume)."""
    wanted = set(records["workload_id"].to_pylist())
    keep, seen = [], set()
    for i, wid in enumerate(workloads["workload_id"].to_pylist()):
        if wid in wanted and wid not in seen:
            seen.add(wid)
            keep.append(i)
    return workloads.take(keep).sort_by("workload_id")


def _optional_noise(source_dir: str, records: pa.Table) -> pa.Table | None:
    """The source's re-measurements of released records. Kept by record, not by hw_id: a noise row's
    hw_id is the hardware of the re-measurement, which may be another machine."""
    try:
        noise = read_table(source_dir, "noise", verify="full")
    except DatasetIntegrityError as exc:
        raise ReleaseError(str(exc)) from exc
    except NotADatasetError:
        return None
    if "record_id" in noise.column_names:
        noise = noise.filter(pc.is_in(noise["record_id"], value_set=records["record_id"].combine_chunks()))
    return noise


def _write_table(root: str, table: str, data: pa.Table, metadata: dict, shard_rows: int) -> list[str]:
    """Write `data` as zstd shards data/<table>/train-i-of-n.parquet; returns the relative paths.

    The collection's schema metadata is replaced: its provenance names the hardware of the first
    collector that wrote the folder, which need not be the hardware of this release.
    """
    data = data.replace_schema_metadata({**metadata, b"cwm_bench.table": table.encode()})
    count = max(1, -(-data.num_rows // shard_rows))
    os.makedirs(os.path.join(root, "data", table))
    paths = []
    for i in range(count):
        rel = os.path.join("data", table, shard_name(i, count))
        pq.write_table(data.slice(i * shard_rows, shard_rows), os.path.join(root, rel), compression="zstd",
                       row_group_size=ROW_GROUP_ROWS)
        paths.append(rel)
    return paths


def _write_checksums(root: str, files: list[str]) -> None:
    with open(os.path.join(root, CHECKSUMS), "w") as handle:
        for rel in sorted(files):
            handle.write(f"{file_sha256(os.path.join(root, rel))}  {rel}\n")


def _sibling(path: str, tag: str) -> str:
    parent, base = os.path.split(path)
    return os.path.join(parent, f".{base}.{tag}-{os.getpid()}")


def _replace_dir(new: str, target: str) -> None:
    """Rename `new` onto `target`; an existing target is moved aside first, then deleted."""
    if not os.path.exists(target):
        os.replace(new, target)
        return
    old = _sibling(target, "old")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        os.replace(old, target)  # put the previous release back
        raise
    shutil.rmtree(old, ignore_errors=True)
