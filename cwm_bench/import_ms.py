"""`cwm-bench import-metaschedule`: MetaSchedule JSON databases → CWM-Bench rows (origin `imported`).

A database folder holds `database_workload.json` (one `[shash, mod]` per line) and
`database_tuning_record.json` (one `[workload_index, [trace, run_secs, target, args_info]]` per line),
as `ms.tune_tir(..., work_dir=DIR)` writes them. The lines are parsed here rather than through
`ms.database.JSONDatabase`, so a bad line is reported by file and line number. Every trace is replayed
on the workload, which gives the program hash and MetaSchedule per-store features; the measured hardware
is unknown, so it is described by the record's target only.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from cwm_bench.hardware import HardwareDescriptor
from cwm_bench.workload.workload import Workload

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
# MetaSchedule's AddToDatabase commits run_secs=[1e10] for every failed build or run (0.27 writes it
# as the JSON integer 10000000000); anything at or above this is no latency.
_FAILED_RUN_SECS = 1e9
_COMM_REDUCE = 2  # tirx.IterVar.CommReduce


class ImportError_(Exception):  # trailing underscore: not the builtin ImportError
    """Bad input: a database folder that cannot be read as a MetaSchedule JSON database."""


@dataclass
class _Database:
    """One parsed folder: MetaSchedule workloads and the raw record lines (line number, JSON)."""

    path: str
    workloads: list[Any]  # ms.database.Workload, by index
    records: list[tuple[int, list]]


@dataclass
class _DirReport:
    path: str
    ok: int = 0
    failed_runs: int = 0
    duplicates: int = 0
    failed_replays: list[str] = field(default_factory=list)


def _read_lines(path: str) -> list[tuple[int, Any]]:
    """(1-based line number, parsed JSON) for every non-blank line; ImportError_ on a bad line."""
    if not os.path.isfile(path):
        raise ImportError_(f"{os.path.dirname(path)}: missing {os.path.basename(path)} "
                           "(not a MetaSchedule JSON database)")
    out = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    out.append((number, json.loads(line)))
                except ValueError as exc:
                    raise ImportError_(f"{path} line {number}: not valid JSON ({exc})") from None
    return out


def _parse(db_dir: str) -> _Database:
    """Read and check one folder; raises before anything of it is written."""
    from tvm.s_tir import meta_schedule as ms

    path = os.path.abspath(db_dir)
    if not os.path.isdir(path):
        raise ImportError_(f"{path}: not a directory")
    workload_file, record_file = os.path.join(path, WORKLOAD_FILE), os.path.join(path, RECORD_FILE)
    workload_lines, record_lines = _read_lines(workload_file), _read_lines(record_file)
    workloads = []
    for number, obj in workload_lines:
        try:
            workloads.append(ms.database.Workload.from_json(obj))
        except Exception as exc:  # noqa: BLE001  (TVM raises many types on a malformed module)
            raise ImportError_(f"{workload_file} line {number}: not a MetaSchedule workload "
                               f"({_first_line(exc)})") from None
    if not record_lines:
        raise ImportError_(f"{path}: empty database (no tuning records in {RECORD_FILE})")
    for number, obj in record_lines:
        if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], int)
                and isinstance(obj[1], list) and len(obj[1]) == 4):
            raise ImportError_(f"{record_file} line {number}: not a tuning record "
                               "([workload_index, [trace, run_secs, target, args_info]])")
        if not 0 <= obj[0] < len(workloads):
            raise ImportError_(f"{record_file} line {number}: workload index {obj[0]} out of range "
                               f"({len(workloads)} workloads in {WORKLOAD_FILE})")
    return _Database(path, workloads, record_lines)


def _parse_workloads(db_dir: str) -> list:
    """The modules of a database folder's workload file (its tuning records are not needed)."""
    from tvm.s_tir import meta_schedule as ms

    path = os.path.join(os.path.abspath(db_dir), WORKLOAD_FILE)
    mods = []
    for number, obj in _read_lines(path):
        try:
            mods.append(ms.database.Workload.from_json(obj).mod)
        except Exception as exc:  # noqa: BLE001  (TVM raises many types on a malformed module)
            raise ImportError_(f"{path} line {number}: not a MetaSchedule workload ({_first_line(exc)})") from None
    if not mods:
        raise ImportError_(f"{path}: no workloads")
    return mods


def _first_line(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return first if first.startswith(name) else f"{name}: {first}".rstrip(": ")


def _task_name(mod, workload_id: str) -> str:
    """The PrimFunc's own name; `main` (what tune_tir names every task) says nothing, so it is replaced."""
    (gvar, func), = mod.functions.items()
    symbol = str((func.attrs or {}).get("global_symbol", "") or gvar.name_hint)
    return symbol if symbol and symbol != "main" else f"imported_{workload_id}"


def _family(mod, task_name: str) -> str:
    """The collector's classifier; a TE matmul's lone block is named `C`, so its shape decides too."""
    from tvm.s_tir import Schedule

    from cwm_bench.workload.relax_import import classify_family

    family = classify_family(mod, task_name)
    if family != "reduction":
        return family
    sch = Schedule(mod)
    pending, blocks = list(sch.get_child_blocks(sch.get_sblock("root"))), []
    while pending:
        rv = pending.pop()
        blocks.append(sch.get(rv))
        pending.extend(sch.get_child_blocks(rv))
    # A matmul: one reduction block, C[i, j] (or [b, i, j]) from two operands of the same rank.
    reducing = [b for b in blocks if any(int(iv.iter_type) == _COMM_REDUCE for iv in b.iter_vars)]
    if len(reducing) == 1 and len(reducing[0].reads) == 2 and len(reducing[0].writes) == 1:
        block = reducing[0]
        rank = len(block.writes[0].source.shape)
        axes = sum(int(iv.iter_type) == _COMM_REDUCE for iv in block.iter_vars)
        if axes == 1 and rank in (2, 3) and all(len(r.source.shape) == rank for r in block.reads):
            return "matmul" if rank == 2 else "batch_matmul"
    return family


def _hardware(target, db_path: str) -> HardwareDescriptor:
    attrs = target.attrs
    arch = attrs.get("mcpu") or attrs.get("arch") or ""
    return HardwareDescriptor(kind="cpu" if target.kind.name == "llvm" else "gpu",
                              name="unknown (imported from a MetaSchedule database)", arch=str(arch),
                              num_cores=int(attrs.get("num-cores", 0) or 0),
                              details={"imported_from": db_path})


def _status(run_secs: Any) -> tuple[str, list[float], str | None]:
    """(status, latencies_s, error) from the raw JSON run_secs (float64, not the float32 TVM keeps)."""
    if (isinstance(run_secs, list) and run_secs
            and all(isinstance(s, int | float) and not isinstance(s, bool) for s in run_secs)
            and all(math.isfinite(s) and 0 < s < _FAILED_RUN_SECS for s in run_secs)):
        return "ok", [float(s) for s in run_secs], None
    return "run_error", [], f"failed in MetaSchedule (run_secs={json.dumps(run_secs)})"


class _Output:
    """The output folder's one writable store for the whole import: opened (and locked) at once when the
    folder exists, so a busy folder is refused before any replay; else on the first rows, so an import
    that yields no rows creates nothing. Closed on exit, whatever happens."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.store = None

    def __enter__(self) -> _Output:
        from cwm_bench.rows.store import DatasetStore

        if os.path.isdir(self.out_dir):
            self.store = DatasetStore(self.out_dir)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.store is not None:
            self.store.close()

    def progress(self, hw_id: str) -> dict:
        return self.store.progress(hw_id) if self.store is not None else {}

    def open(self, prov: dict):
        from cwm_bench.rows.store import DatasetStore

        if self.store is None:
            self.store = DatasetStore(self.out_dir, prov)
        return self.store


def _import_dir(db: _Database, out: _Output, cache: dict, workloads_by_id: dict[str, Workload]) -> _DirReport:
    """Replay, featurize and write one parsed folder; `cache` holds generators across folders."""
    import tvm

    from cwm_bench.candidates.generate import CandidateGenerator
    from cwm_bench.rows.records import provenance, record_row, workload_row

    report = _DirReport(db.path)
    protocol_json = json.dumps({"source": "metaschedule", "db": db.path})
    pending: list[tuple[Any, Any, HardwareDescriptor, str, str, str | None, list[float]]] = []
    ours: dict[int, Workload] = {}
    for number, (index, (trace, run_secs, target_obj, _args)) in db.records:
        try:
            if index not in ours:
                w = Workload.from_mod(db.workloads[index].mod, "", "", "imported")
                w = workloads_by_id.setdefault(w.workload_id, w)
                if not w.task_name:
                    w.task_name = _task_name(db.workloads[index].mod, w.workload_id)
                    w.family = _family(w.mod, w.task_name)
                ours[index] = w
            workload = ours[index]
            target = tvm.target.Target(target_obj)
            hardware = _hardware(target, db.path)
            # Keyed by hw_id, not target: rows are unique per (program, hw_id), and targets that
            # differ only in attributes the descriptor ignores (mtriple, keys) share one hw_id.
            key = (workload.workload_id, hardware.hw_id)
            if key not in cache:
                cache[key] = CandidateGenerator(workload, target)
                progress = out.progress(hardware.hw_id).get(workload.workload_id)
                cache[key].remember(progress.program_hashes if progress else ())  # re-import: no dupes
            candidate = cache[key].imported(json.dumps(trace))
        except Exception as exc:  # noqa: BLE001  (one bad record is reported; the import goes on)
            report.failed_replays.append(f"{db.path}/{RECORD_FILE} line {number}: {_first_line(exc)}")
            continue
        if candidate is None:
            report.duplicates += 1
            continue
        status, latencies, error = _status(run_secs)
        pending.append((cache[key], candidate, hardware, str(target), status, error, latencies))
    if not pending:
        return report
    for generator in {id(g): g for g, *_ in pending}.values():  # one feature batch per generator
        generator.add_features([c for g, c, *_ in pending if g is generator])
    store = out.open(provenance(pending[0][2], pending[0][3], protocol_json))
    known, used = store.known_keys("workloads"), {c.workload_id for _, c, *_ in pending}
    store.write("workloads", [workload_row(w) for w in {w.workload_id: w for w in ours.values()}.values()
                              if w.workload_id in used and w.workload_id not in known])
    rows = [record_row(workload_id=c.workload_id, program_hash=c.program_hash, trace_json=c.trace_json,
                       features=c.features, target_json=target_json, hardware=hardware, status=status,
                       latencies_s=latencies, error=error, checked=False, origin="imported",
                       design_space=-1, seed=0, protocol_json=protocol_json)
            for _, c, hardware, target_json, status, error, latencies in pending]
    store.write("records", rows)
    report.ok = sum(status == "ok" for *_, status, _, _ in pending)
    report.failed_runs = len(pending) - report.ok
    return report


def import_databases(db_dirs: list[str], out_dir: str) -> str:
    """Import every tuning record of the folders into `out_dir`; returns a printable report.

    All folders are parsed before any is imported, so bad input (ImportError_) writes nothing. One
    store (one lock) serves the whole import; a busy `out_dir` raises DatasetBusyError, a damaged one
    DatasetIntegrityError, before anything is written.
    """
    databases = [_parse(d) for d in db_dirs]
    cache: dict = {}
    workloads_by_id: dict[str, Workload] = {}
    lines = []
    with _Output(out_dir) as out:
        for db in databases:
            r = _import_dir(db, out, cache, workloads_by_id)
            lines.append(f"{r.path}: {r.ok + r.failed_runs} records imported ({r.ok} ok, {r.failed_runs} "
                         f"failed in MetaSchedule), {r.duplicates} skipped duplicates, "
                         f"{len(r.failed_replays)} failed replays")
            lines.extend(f"  {failure}" for failure in r.failed_replays)
    lines.append(f"{len(workloads_by_id)} workloads -> {os.path.abspath(out_dir)}")
    return "\n".join(lines)
