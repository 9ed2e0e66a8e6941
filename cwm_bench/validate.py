"""`cwm-bench validate`: is a dataset folder whole, consistent and replayable?

Every problem names the file (and row) it was found in. Checked:

- the integrity gate in full (rows/integrity.py): every data file listed in manifest.json or
  checksums.sha256 and matching its size, rows and sha256; every shard readable with the schema's
  columns and types;
- rows (rows/rules.py `record_problems`, `workload_problems`): ids, duplicates, statuses, origins; ok
  records carry a positive latency that is the median of their timings, the protocol's number of
  timings, and their features; counts and fractions in range;
- a release: its data card (README.md with `configs`) and split columns of `train`/`test` only;
- a sample of traces replays to the recorded program.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from cwm_bench.candidates.generate import ORIGINS
from cwm_bench.rows.integrity import CARD, card_front_matter, inspect_folder, one_line
from cwm_bench.rows.reader import NotADatasetError, data_files, layout_of, read_shard
from cwm_bench.rows.records import record_id
from cwm_bench.rows.rules import record_problems, workload_problems
from cwm_bench.rows.schema import TABLES

MAX_PROBLEMS = 50


@dataclass
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def card_problems(root: str) -> list[Problem]:
    """A release's data card: README.md with YAML front matter whose `configs` name existing files."""
    import glob

    import yaml

    readme = os.path.join(root, CARD)
    if not os.path.exists(readme):
        return [Problem(CARD, "missing: a release carries its data card (build the folder with `cwm-bench "
                              "release`, or write the card with `cwm-bench card`)")]
    with open(readme, errors="replace") as handle:
        text = handle.read()
    try:
        front = card_front_matter(text)
    except yaml.YAMLError as exc:
        return [Problem(CARD, f"front matter is not YAML ({one_line(exc)})")]
    configs = front.get("configs") if isinstance(front, dict) else None
    if not configs:
        return [Problem(CARD, "no `configs` in the front matter (regenerate it with `cwm-bench card`)")]
    problems = []
    for config in configs:
        for entry in config.get("data_files", []) if isinstance(config, dict) else []:
            if not glob.glob(os.path.join(root, str(entry.get("path", "")))):
                problems.append(Problem(CARD, f"config {config.get('config_name')}: no file matches "
                                              f"{entry.get('path')}"))
    return problems


def _read_tables(root: str, layout: str, skip: set[str],
                 problems: list[Problem]) -> dict[str, list[tuple[str, pa.Table]]]:
    """Every shard of the schema's tables that the gate found readable and of the right schema."""
    tables: dict[str, list[tuple[str, pa.Table]]] = {}
    for name in TABLES:
        tables[name] = []
        for path in data_files(root, name, layout):
            rel = os.path.relpath(path, root)
            if rel in skip:
                continue
            try:
                tables[name].append((rel, read_shard(name, path)))
            except Exception as exc:  # noqa: BLE001  (any unreadable file is reported, not raised)
                problems.append(Problem(rel, f"not a readable Parquet file ({type(exc).__name__}: "
                                             f"{one_line(exc)})"))
    return tables


def _check_records(tables, problems: list[Problem]) -> tuple[int, dict[str, str]]:
    workload_mods: dict[str, str] = {}
    for rel, table in tables["workloads"]:
        for i, (wid, mod_json) in enumerate(zip(table.column("workload_id").to_pylist(),
                                                table.column("mod_json").to_pylist(), strict=True)):
            if wid in workload_mods:
                problems.append(Problem(f"{rel} row {i}", f"duplicate workload_id {wid}"))
            workload_mods[wid] = mod_json
        problems.extend(Problem(f"{rel} row {i}", message) for i, message in workload_problems(table))
    seen: dict[tuple[str, str], str] = {}
    count = 0
    for rel, table in tables["records"]:
        cols = {c: table.column(c).to_pylist() for c in
                ("record_id", "hw_id", "workload_id", "program_hash", "origin")}
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
            if cols["origin"][i] not in ORIGINS:
                problems.append(Problem(where, f"invalid origin {cols['origin'][i]!r}; valid: {ORIGINS}"))
        problems.extend(Problem(f"{rel} row {i}", message) for i, message in record_problems(table))
    return count, workload_mods


def _check_splits(tables, problems: list[Problem]) -> None:
    from cwm_bench.splits import SPLIT_COLUMNS

    for rel, table in tables["records"]:
        for column in SPLIT_COLUMNS.values():
            values = table.column(column).to_pylist()
            bad = [i for i, v in enumerate(values) if v not in ("train", "test")]
            if bad:
                problems.append(Problem(f"{rel} row {bad[0]}", f"{column} is {values[bad[0]]!r} (must be train or "
                                                              f"test; {len(bad)} such rows)"))


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
                                                       f"{one_line(exc)})"))
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
        problems.append(Problem("manifest.json", "missing (not a cwm-bench dataset folder?)"))
        return problems, "0 workloads, 0 records, 0 traces replayed"
    issues = inspect_folder(root, "full", layout=layout)
    problems.extend(Problem(i.rel, i.message) for i in issues)
    if layout == "release":
        problems.extend(card_problems(root))
    tables = _read_tables(root, layout, {i.rel for i in issues if i.kind in ("unreadable", "schema")}, problems)
    records, workload_mods = _check_records(tables, problems)
    if layout == "release":
        _check_splits(tables, problems)
    replayed = _check_replay(tables, workload_mods, replay_count, problems) if replay_count else 0
    if len(problems) > MAX_PROBLEMS:
        extra = len(problems) - MAX_PROBLEMS
        problems = problems[:MAX_PROBLEMS] + [Problem(root, f"... and {extra} more problems")]
    return problems, f"{len(workload_mods)} workloads, {records} records, {replayed} traces replayed"
