"""`cwm-bench validate`: is a dataset folder whole, consistent and replayable?

Every problem names the file (and row) it was found in.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cwm_bench.candidates.generate import ORIGINS
from cwm_bench.rows.reader import NotADatasetError, layout_of, table_files
from cwm_bench.rows.records import record_id
from cwm_bench.rows.schema import ADDED_COLUMNS, STATUSES, TABLES, upgrade
from cwm_bench.rows.store import sha256_of

MAX_PROBLEMS = 50


@dataclass
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def _check_schema(path: str, schema: pa.Schema, expected: pa.Schema, optional: tuple[str, ...] = ()) -> list[Problem]:
    problems = []
    unknown = [n for n in schema.names if n not in expected.names]
    missing = [n for n in expected.names if n not in schema.names and n not in optional]
    if unknown:
        problems.append(Problem(path, f"unknown column(s) {unknown}"))
    if missing:
        problems.append(Problem(path, f"missing column(s) {missing}"))
    for field in expected:
        if field.name in schema.names and not schema.field(field.name).type.equals(field.type):
            problems.append(Problem(path, f"column {field.name!r} has type {schema.field(field.name).type}, "
                                          f"expected {field.type}"))
    return problems


def _expected_schemas(layout: str) -> dict[str, pa.Schema]:
    if layout == "collection":
        return TABLES
    from cwm_bench.splits import SPLIT_COLUMNS  # a release's records carry one split column per scheme

    records = TABLES["records"]
    for column in SPLIT_COLUMNS.values():
        records = records.append(pa.field(column, pa.string()))
    return {**TABLES, "records": records}


def _read_tables(root: str, layout: str, problems: list[Problem]) -> dict[str, list[tuple[str, pa.Table]]]:
    tables: dict[str, list[tuple[str, pa.Table]]] = {}
    for name, expected in _expected_schemas(layout).items():
        tables[name] = []
        try:
            paths = table_files(root, name)
        except NotADatasetError:
            paths = []
        for path in paths:
            rel = os.path.relpath(path, root)
            try:
                table = pq.read_table(path)
            except Exception as exc:  # noqa: BLE001  (any unreadable file is reported, not raised)
                problems.append(Problem(rel, f"not a readable Parquet file ({type(exc).__name__}: {exc})"))
                continue
            # Shards of schema 1 lack the columns added since: they read as nulls.
            version = (table.schema.metadata or {}).get(b"cwm_bench.schema_version", b"1")
            optional = ADDED_COLUMNS.get(name, ()) if version == b"1" else ()
            schema_problems = _check_schema(rel, table.schema, expected, optional)
            problems.extend(schema_problems)
            if not schema_problems:
                tables[name].append((rel, upgrade(name, table) if name in ADDED_COLUMNS else table))
    return tables


def _check_manifest(root: str, problems: list[Problem]) -> None:
    path = os.path.join(root, "manifest.json")
    if not os.path.exists(path):
        problems.append(Problem("manifest.json", "missing (not a cwm-bench dataset folder?)"))
        return
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        problems.append(Problem("manifest.json", f"unreadable: {exc}"))
        return
    for table, entries in manifest.get("shards", {}).items():
        listed = {e["file"]: e for e in entries}
        folder = os.path.join(root, table)
        on_disk = {f for f in os.listdir(folder) if f.endswith(".parquet")} if os.path.isdir(folder) else set()
        for name in sorted(set(listed) - on_disk):
            problems.append(Problem(f"{table}/{name}", "listed in manifest.json but missing"))
        for name in sorted(on_disk - set(listed)):
            problems.append(Problem(f"{table}/{name}", "not listed in manifest.json "
                                                       "(run `cwm-bench validate --rebuild-manifest`)"))
        for name in sorted(on_disk & set(listed)):
            if os.path.getsize(os.path.join(folder, name)) == 0:
                problems.append(Problem(f"{table}/{name}", "empty file"))
            elif sha256_of(os.path.join(folder, name)) != listed[name]["sha256"]:
                problems.append(Problem(f"{table}/{name}", "checksum differs from manifest.json"))


def _check_records(tables, problems: list[Problem]) -> tuple[int, dict[str, str]]:
    workload_mods: dict[str, str] = {}
    for rel, table in tables["workloads"]:
        for i, (wid, mod_json) in enumerate(zip(table.column("workload_id").to_pylist(),
                                                table.column("mod_json").to_pylist(), strict=True)):
            if wid in workload_mods:
                problems.append(Problem(f"{rel} row {i}", f"duplicate workload_id {wid}"))
            workload_mods[wid] = mod_json
    seen: dict[tuple[str, str], str] = {}
    count = 0
    for rel, table in tables["records"]:
        cols = {c: table.column(c).to_pylist() for c in
                ("record_id", "hw_id", "workload_id", "program_hash", "status", "origin", "latency_s",
                 "latencies_s")}
        for i in range(table.num_rows):
            count += 1
            where = f"{rel} row {i}"
            key = (cols["record_id"][i], cols["hw_id"][i])
            if key in seen:
                problems.append(Problem(where, f"duplicate record {key[0]} on hardware {key[1]} "
                                               f"(first in {seen[key]})"))
            seen[key] = where
            if cols["workload_id"][i] not in workload_mods:
                problems.append(Problem(where, f"unknown workload_id {cols['workload_id'][i]}"))
            if cols["record_id"][i] != record_id(cols["workload_id"][i], cols["program_hash"][i]):
                problems.append(Problem(where, "record_id does not match workload_id + program_hash"))
            if cols["status"][i] not in STATUSES:
                problems.append(Problem(where, f"invalid status {cols['status'][i]!r}; valid: {STATUSES}"))
            if cols["origin"][i] not in ORIGINS:
                problems.append(Problem(where, f"invalid origin {cols['origin'][i]!r}; valid: {ORIGINS}"))
            if cols["status"][i] == "ok":
                lat = cols["latency_s"][i]
                if not cols["latencies_s"][i] or lat is None or not np.isfinite(lat) or lat <= 0:
                    problems.append(Problem(where, "status ok but no valid latency"))
    return count, workload_mods


def _check_replay(tables, workload_mods: dict[str, str], replay_count: int, problems: list[Problem]) -> int:
    import tvm

    from cwm_bench.candidates.actions import replay_trace
    from cwm_bench.tvm_env import structural_hash_hex

    candidates = [(rel, i, wid, trace, program)
                  for rel, table in tables["records"]
                  for i, (wid, trace, program) in enumerate(zip(
                      table.column("workload_id").to_pylist(), table.column("trace_json").to_pylist(),
                      table.column("program_hash").to_pylist(), strict=True))
                  if wid in workload_mods]
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(candidates), size=min(replay_count, len(candidates)), replace=False) \
        if candidates else []
    mods: dict[str, object] = {}
    for index in chosen:
        rel, i, wid, trace, program = candidates[int(index)]
        try:
            mod = mods.setdefault(wid, tvm.ir.load_json(workload_mods[wid]))
            got = structural_hash_hex(replay_trace(trace, mod).mod)
        except Exception as exc:  # noqa: BLE001
            problems.append(Problem(f"{rel} row {i}", f"trace does not replay ({type(exc).__name__}: "
                                                       f"{str(exc).splitlines()[0] if str(exc) else ''})"))
            continue
        if got != program:
            problems.append(Problem(f"{rel} row {i}", f"replayed trace gives program {got}, recorded {program}"))
    return len(chosen)


def validate_dataset(root: str, replay_count: int = 20) -> tuple[list[Problem], str]:
    """All problems found in the folder (empty list: valid) and a one-line summary."""
    problems: list[Problem] = []
    try:
        layout = layout_of(root)
    except NotADatasetError:
        layout = "collection"  # report what a collection folder lacks
    if layout == "release":
        from cwm_bench.release import verify_checksums

        problems.extend(Problem("checksums.sha256", p) for p in verify_checksums(root))
    else:
        _check_manifest(root, problems)
    tables = _read_tables(root, layout, problems)
    records, workload_mods = _check_records(tables, problems)
    replayed = _check_replay(tables, workload_mods, replay_count, problems) if replay_count else 0
    if len(problems) > MAX_PROBLEMS:
        extra = len(problems) - MAX_PROBLEMS
        problems = problems[:MAX_PROBLEMS] + [Problem(root, f"... and {extra} more problems")]
    return problems, f"{len(workload_mods)} workloads, {records} records, {replayed} traces replayed"
