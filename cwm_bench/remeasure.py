"""`cwm-bench remeasure`: replay a dataset's traces on this machine and measure them again.

Two uses: porting the benchmark to new hardware (the same programs, this machine's latencies), and
the second run for the two-run agreement and the estimated oracle accuracy (the same machine, a
separate process at a later time; see `noise.py`). Builds and timings go through the collector's own
machinery (`ParallelBuilder`, `Runner`, `record_row`), so a
re-measured row is taken exactly like a collected one. Record ids depend only on workload + program,
so the new rows share their ids with the source rows. Resumable like `collect`: one shard per batch,
and records this hardware already has in the output folder are skipped.

Features are reused from the source when it was measured on the same kind of device: MetaSchedule's
per-store features depend only on the program and on whether the target is a GPU (`PerStoreFeature`
reads nothing else of the target), and a replayed trace gives the same program (checked by its hash).
Otherwise they are recomputed for this target.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from cwm_bench.hardware import HardwareDescriptor
from cwm_bench.measure.protocol import MeasureProtocol

# Everything of a source record but its features, which are read per batch (they are the bulk).
_LIGHT_COLUMNS = ["record_id", "workload_id", "hw_kind", "program_hash", "trace_json", "status", "origin",
                  "design_space", "seed", "protocol"]


@dataclass(frozen=True)
class RemeasureConfig:
    sample_fraction: float = 1.0  # < 1: a seeded sample of each task's ok records
    seed: int = 0
    batch_size: int = 16
    build_workers: int | None = None
    build_timeout_s: float = 120.0
    protocol_overrides: dict[str, Any] = field(default_factory=dict)  # applied on the source's protocol
    # Only this many tasks (all their records), picked by a seeded hash of the workload id: a task's
    # pick does not depend on the others, and a larger N picks a superset. None: every task.
    max_tasks: int | None = None


@dataclass
class RemeasureReport:
    selected: int = 0
    already_done: int = 0
    counts: Counter = field(default_factory=Counter)  # new rows by status
    failed_replays: list[str] = field(default_factory=list)
    protocol_json: str = ""

    def __str__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "none"
        lines = [f"{self.selected} records selected, {self.already_done} already measured on this hardware, "
                 f"{sum(self.counts.values())} measured ({counts}), {len(self.failed_replays)} failed replays"]
        lines.extend(f"  {failure}" for failure in self.failed_replays)
        return "\n".join(lines)


def select_records(records: list[dict], sample_fraction: float = 1.0, seed: int = 0) -> list[dict]:
    """The records to re-measure, grouped by task in order of first appearance, one per record_id.

    With `sample_fraction` < 1, each task keeps round(fraction * its ok records), at least one, drawn
    with a generator seeded by (seed, workload_id): the sample of a task does not depend on the others.
    """
    if not 0 < sample_fraction <= 1:
        raise ValueError(f"sample_fraction must be in (0, 1], got {sample_fraction}")
    by_task: dict[str, dict[str, dict]] = {}
    for r in records:
        by_task.setdefault(r["workload_id"], {}).setdefault(r["record_id"], r)  # a record on 2 machines: once
    chosen = []
    for wid, rows in by_task.items():
        if sample_fraction >= 1:
            chosen.extend(rows.values())
            continue
        ok = sorted(rid for rid, r in rows.items() if r["status"] == "ok")  # sorted: shard order is no input
        if not ok:
            continue
        k = max(1, round(sample_fraction * len(ok)))
        task_seed = int.from_bytes(hashlib.sha1(f"{seed}:{wid}".encode()).digest()[:8], "little")
        picked = set(np.random.default_rng(task_seed).choice(len(ok), size=k, replace=False).tolist())
        chosen.extend(r for rid, r in rows.items() if rid in {ok[i] for i in picked})
    return chosen


def select_tasks(workload_ids, max_tasks: int | None, seed: int = 0) -> set[str]:
    """`max_tasks` of the distinct `workload_ids` (all when None or fewer), by a seeded hash of each id."""
    ids = sorted(set(workload_ids))
    if max_tasks is None or max_tasks >= len(ids):
        return set(ids)
    if max_tasks < 1:
        raise ValueError(f"max_tasks must be >= 1, got {max_tasks}")
    key = {w: hashlib.sha256(f"tasks:{seed}:{w}".encode()).hexdigest() for w in ids}
    return set(sorted(ids, key=key.__getitem__)[:max_tasks])


def source_protocol(records: list[dict], overrides: dict[str, Any] | None = None) -> MeasureProtocol:
    """The protocol most of `records` were measured with (default where unknown), then `overrides`.

    Re-measuring with the source's own protocol keeps the two runs comparable (`cwm-bench noise`)."""
    known = {f.name for f in dataclasses.fields(MeasureProtocol)}
    texts = Counter(r.get("protocol") for r in records if r.get("protocol"))
    base: dict[str, Any] = {}
    if texts:
        try:
            base = {k: v for k, v in json.loads(texts.most_common(1)[0][0]).items() if k in known}
        except (ValueError, AttributeError):
            base = {}  # not a cwm-bench protocol (e.g. imported from MetaSchedule)
    return MeasureProtocol(**{**base, **(overrides or {})})


def remeasure(source: str, out_dir: str, hardware: HardwareDescriptor,
              config: RemeasureConfig = RemeasureConfig(), on_records: Callable[[int], None] | None = None,
              on_total: Callable[[int], None] | None = None, log: Callable[[str], None] = print) -> RemeasureReport:
    """Re-measure `source`'s records (a collection or release folder) on `hardware` into `out_dir`.

    A record whose trace fails to replay (or replays to another program) is reported and skipped.
    `on_total(n)` is told how many records are left to do, `on_records(n)` after every batch.
    """
    from cwm_bench.hardware import target_for
    from cwm_bench.rows.reader import read_table
    from cwm_bench.rows.records import provenance
    from cwm_bench.rows.store import DatasetStore

    if os.path.realpath(source) == os.path.realpath(out_dir):
        raise ValueError("remeasure writes a new folder: --out must differ from the source")
    table = read_table(source, "records")
    tasks = select_tasks(table.column("workload_id").to_pylist(), config.max_tasks, config.seed)
    light = [r for r in table.select(_LIGHT_COLUMNS).to_pylist() if r["workload_id"] in tasks]
    chosen = select_records(light, config.sample_fraction, config.seed)
    protocol = source_protocol(chosen, config.protocol_overrides)
    report = RemeasureReport(selected=len(chosen), protocol_json=protocol.to_json())
    workloads = {r["workload_id"]: r for r in read_table(source, "workloads").to_pylist()}

    target = target_for(hardware)
    prov = {**provenance(hardware, str(target), report.protocol_json), "remeasured_from": os.path.abspath(source)}
    store = DatasetStore(out_dir, prov)  # locks the folder: one writer at a time
    session = _Session(hardware, target, protocol, config, workloads, report, log)
    try:
        records_here = store.read("records", ["record_id", "hw_id"])
        done = {rid for rid, hw in zip(records_here.column("record_id").to_pylist(),
                                       records_here.column("hw_id").to_pylist(), strict=True) if hw == hardware.hw_id}
        todo = [r for r in chosen if r["record_id"] not in done]
        report.already_done = len(chosen) - len(todo)
        known = store.known_keys("workloads")
        involved = dict.fromkeys(r["workload_id"] for r in todo)
        store.write("workloads", [workloads[w] for w in involved if w in workloads and w not in known])
        store.write_manifest()  # a dataset folder even when there is nothing left to write
        if on_total:
            on_total(len(todo))
        index_of = {rid: i for i, rid in enumerate(table.column("record_id").to_pylist())}
        for start in range(0, len(todo), config.batch_size):
            batch = todo[start:start + config.batch_size]
            features = table.take(pa.array([index_of[r["record_id"]] for r in batch])).column("features")
            rows = session.measure_batch(batch, features.to_pylist())
            store.write("records", rows)
            report.counts.update(r["status"] for r in rows)
            if on_records:
                on_records(len(batch))
    finally:
        session.close()
        store.close()
    return report


class _Session:
    """The builder, runner and per-task state of one remeasure run."""

    def __init__(self, hardware: HardwareDescriptor, target, protocol: MeasureProtocol, config: RemeasureConfig,
                 workloads: dict[str, dict], report: RemeasureReport, log: Callable[[str], None]):
        from cwm_bench.build.builder import ParallelBuilder
        from cwm_bench.measure.runner import Runner
        from cwm_bench.tvm_env import load_tensor_intrinsics

        load_tensor_intrinsics(target.kind.name)  # traces may name this target's tensor intrinsics
        self.hardware, self.target, self.target_json = hardware, target, str(target)
        self.protocol, self.protocol_json, self.report, self.log = protocol, protocol.to_json(), report, log
        self.workload_rows = workloads
        self.rng = np.random.default_rng(config.seed)  # which candidates get their outputs checked
        self._mods: dict[str, Any] = {}
        self._generators: dict[str, Any] = {}
        self._references: dict[str, str | None] = {}
        # Started lazily, like the collector's: a run with nothing to build starts no worker.
        self._new_builder = lambda: ParallelBuilder(self.target_json, config.build_workers, config.build_timeout_s)
        self._new_runner = lambda: Runner(protocol, device="cuda" if hardware.kind == "gpu" else "cpu",
                                          num_threads=hardware.num_cores, seed=config.seed)
        self._builder: Any = None
        self._runner: Any = None

    def measure_batch(self, batch: list[dict], stored_features: list) -> list[dict]:
        from cwm_bench.measure.runner import MeasureItem, MeasureResult
        from cwm_bench.rows.records import record_row

        replayed = []  # (source row, schedule, features)
        for r, feats in zip(batch, stored_features, strict=True):
            try:
                sch = self._replay(r)
                replayed.append((r, sch, self._features(r, sch, feats)))
            except Exception as exc:  # noqa: BLE001  (one bad record is reported; the run goes on)
                text = str(exc).strip().splitlines()
                failure = f"record {r['record_id']} ({r['workload_id']}): {type(exc).__name__}: " \
                          f"{text[0] if text else ''}"
                self.report.failed_replays.append(failure)
                self.log(f"skipped: {failure}")
        if not replayed:
            return []
        builds = self.builder.build([(r["record_id"], sch.mod) for r, sch, _ in replayed])
        check = self.rng.random(len(replayed)) < self.protocol.check_fraction
        items = []
        for (r, _, _), b, flag in zip(replayed, builds, check, strict=True):
            if b.status == "ok" and b.lib_path:
                w = self.workload_rows[r["workload_id"]]
                specs = [(list(shape), dtype) for shape, dtype in zip(w["arg_shapes"], w["arg_dtypes"], strict=True)]
                items.append(MeasureItem(b.key, b.lib_path, r["workload_id"], specs,
                                         self._reference(r["workload_id"]) if flag else None))
        measured = {m.key: m for m in self.runner.measure(items)}
        self.builder.discard(builds)
        rows = []
        for (r, _, feats), b in zip(replayed, builds, strict=True):
            m = measured.get(b.key) or MeasureResult(b.key, b.status, [], b.error)
            rows.append(record_row(
                workload_id=r["workload_id"], program_hash=r["program_hash"], trace_json=r["trace_json"],
                features=feats, target_json=self.target_json, hardware=self.hardware, status=m.status,
                latencies_s=m.latencies_s, error=m.error, checked=m.checked, origin=r["origin"],
                design_space=r["design_space"], seed=r["seed"], protocol_json=self.protocol_json,
                measured_by=m.measured_by))
        return rows

    def _replay(self, r: dict):
        """The record's schedule, rebuilt from its trace; raises unless it is the recorded program."""
        import tvm

        from cwm_bench.candidates.actions import replay_trace
        from cwm_bench.rows.records import record_id
        from cwm_bench.tvm_env import structural_hash_hex

        wid = r["workload_id"]
        if wid not in self.workload_rows:
            raise KeyError(f"workload {wid} is not in the source's workloads table")
        if wid not in self._mods:
            self._mods[wid] = tvm.ir.load_json(self.workload_rows[wid]["mod_json"])
        sch = replay_trace(r["trace_json"], self._mods[wid])
        program = structural_hash_hex(sch.mod)
        # The new row's id is recomputed from workload + program: it must be the source's id.
        if program != r["program_hash"] or record_id(wid, program) != r["record_id"]:
            raise ValueError(f"the trace replays to program {program}, recorded {r['program_hash']}")
        return sch

    def _features(self, r: dict, sch, stored: list | None) -> np.ndarray:
        if stored is not None and r["hw_kind"] == self.hardware.kind:
            return np.asarray(stored, dtype=np.float32)
        from cwm_bench.candidates.generate import Candidate, CandidateGenerator

        wid = r["workload_id"]
        if wid not in self._generators:
            self._generators[wid] = CandidateGenerator(self._workload(wid), self.target)
        candidate = Candidate(wid, sch, r["origin"], r["seed"], r["design_space"], r["program_hash"], r["trace_json"])
        features = self._generators[wid].add_features([candidate])[0].features
        assert features is not None
        return features

    def _workload(self, wid: str):
        from cwm_bench.tuning.tasks import workload_from_row

        return workload_from_row({**self.workload_rows[wid], "workload_id": wid}, self._mods[wid])

    def _reference(self, wid: str) -> str | None:
        """The unscheduled program, built once per task, for output checks."""
        if wid not in self._references:
            result = self.builder.build([(f"reference-{wid}", self._mods[wid])])[0]
            if result.status != "ok":
                self.log(f"{wid}: the unscheduled program did not build, outputs go unchecked ({result.error})")
            self._references[wid] = result.lib_path
        return self._references[wid]

    @property
    def builder(self):
        if self._builder is None:
            self._builder = self._new_builder()
        return self._builder

    @property
    def runner(self):
        if self._runner is None:
            self._runner = self._new_runner()
        return self._runner

    def close(self) -> None:
        for worker in (self._builder, self._runner):
            if worker is not None:
                worker.close()
        self._builder = self._runner = None
