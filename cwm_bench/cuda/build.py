"""Step 1 of a GPU dataset: draw CUDA candidates, compile them here (nvcc, no GPU needed) and pack
them into bundles a lent GPU machine can time with runtime-only TVM.

    BUNDLE/manifest.json      target, workloads (arg specs, reference lib), candidates (key, lib, trace...)
    BUNDLE/libs/<key>.so      one exported library per built candidate (+ ref-<workload>.so); without a
                              GPU here TVM exports the kernels' CUDA *source* in it, so...
    BUNDLE/kernels/<sha>.cubin  ...each kernel is compiled here by nvcc (TVM's flags) and served to the
                              loader on the device by source digest (`tools/cuda_measure.py`)
    BUNDLE/pending.parquet    each candidate's records row minus the measurement (RECORDS schema)
    BUNDLE/workloads.parquet  the workloads rows

Round 1 candidates are random samples of MetaSchedule's CUDA design spaces; later rounds
(`build-cuda --from DATA_DIR`) come from its evolutionary search, guided by XGB trained on what
earlier rounds measured. The manifest says the round; ingest copies it into each row's protocol.
References are the workloads scheduled by dlight's GPU fallback
(or `DefaultGPUSchedule`); a workload neither can schedule goes unchecked.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from cwm_bench.build.builder import BuildResult, ParallelBuilder
from cwm_bench.candidates.generate import Candidate, CandidateGenerator
from cwm_bench.cuda import BUNDLE_FORMAT, MANIFEST, PENDING, WORKLOADS
from cwm_bench.hardware import HardwareDescriptor, target_for
from cwm_bench.rows.records import record_id, record_row, tvm_version, workload_row
from cwm_bench.rows.schema import RECORDS
from cwm_bench.rows.schema import WORKLOADS as WORKLOADS_SCHEMA
from cwm_bench.workload.workload import Workload


def reference_module(mod, target):
    """The workload with a plain GPU schedule (thread bindings only), or None if none applies.
    Works on a deep copy: dlight's pass was seen to rewrite the workload's own module in place."""
    import tvm

    mod = tvm.ir.load_json(tvm.ir.save_json(mod))

    try:
        from tvm.s_tir import dlight as dl

        with target:
            return dl.ApplyDefaultSchedule(dl.gpu.Fallback())(mod)
    except Exception:  # noqa: BLE001  (try the next scheduler)
        pass
    try:
        with target:
            return tvm.s_tir.transform.DefaultGPUSchedule()(mod)
    except Exception:  # noqa: BLE001
        return None


@dataclass
class _Bundle:
    path: str
    workloads: dict[str, dict] = field(default_factory=dict)  # workload_id -> manifest entry
    candidates: list[dict] = field(default_factory=list)
    pending: list[dict] = field(default_factory=list)
    workload_rows: list[dict] = field(default_factory=list)
    size: int = 0


class BundleWriter:
    """Fills bundles up to `max_bytes` of libraries each, then starts the next (bundle-000, -001...)."""

    def __init__(self, out_dir: str, target_json: str, gpu: HardwareDescriptor, max_bytes: int,
                 binaries_dir: str, build_round: int = 1):
        self.build_round = build_round  # 1: random candidates; 2+: evolutionary, seeded with measured rounds
        self.out_dir = out_dir
        self.binaries_dir = binaries_dir
        self.target_json = target_json
        self.gpu = gpu
        self.max_bytes = max_bytes
        self.done: list[str] = []
        self.current: _Bundle | None = None

    def _open(self) -> _Bundle:
        if self.current is None:
            path = os.path.join(self.out_dir, f"bundle-{len(self.done):03d}")
            if os.path.exists(os.path.join(path, MANIFEST)):
                raise FileExistsError(f"{path} already holds a bundle; choose another --out")
            os.makedirs(os.path.join(path, "libs"), exist_ok=True)
            os.makedirs(os.path.join(path, "kernels"), exist_ok=True)
            self.current = _Bundle(path)
        return self.current

    def _add_lib(self, bundle: _Bundle, build: BuildResult, name: str) -> str:
        rel = f"libs/{name}"
        shutil.copyfile(build.lib_path, os.path.join(bundle.path, rel))
        bundle.size += os.path.getsize(build.lib_path)
        for digest in build.device_binaries:
            dst = os.path.join(bundle.path, "kernels", f"{digest}.cubin")
            if not os.path.exists(dst):
                shutil.copyfile(os.path.join(self.binaries_dir, f"{digest}.cubin"), dst)
                bundle.size += os.path.getsize(dst)
        return rel

    def add(self, w: Workload, reference: BuildResult | None, candidate: Candidate, build: BuildResult,
            row: dict) -> None:
        bundle = self._open()
        if bundle.size >= self.max_bytes:
            self.close_current()
            bundle = self._open()
        if w.workload_id not in bundle.workloads:
            bundle.workloads[w.workload_id] = {
                "task_name": w.task_name, "flops": w.flops,
                "arg_specs": [[list(a.shape), a.dtype] for a in w.args],
                "reference": self._add_lib(bundle, reference, f"ref-{w.workload_id}.so") if reference else None,
                "reference_device_binaries": list(reference.device_binaries) if reference else []}
            bundle.workload_rows.append(workload_row(w))
        key = row["record_id"]
        lib = self._add_lib(bundle, build, f"{key}.so") if build.lib_path else None
        bundle.candidates.append({
            "key": key, "workload_id": w.workload_id, "program_hash": candidate.program_hash,
            "origin": candidate.origin, "seed": candidate.seed, "design_space": candidate.design_space,
            "lib": lib, "device_binaries": list(build.device_binaries), "build_status": build.status,
            "build_error": build.error, "build_s": build.build_s,
            "trace_json": candidate.trace_json})
        bundle.pending.append(row)

    def close_current(self) -> None:
        bundle, self.current = self.current, None
        if bundle is None or not bundle.candidates:
            return
        pq.write_table(pa.Table.from_pylist(bundle.pending, schema=RECORDS), os.path.join(bundle.path, PENDING))
        pq.write_table(pa.Table.from_pylist(bundle.workload_rows, schema=WORKLOADS_SCHEMA),
                       os.path.join(bundle.path, WORKLOADS))
        manifest = {"format": BUNDLE_FORMAT, "target": json.loads(self.target_json),
                    "gpu": json.loads(self.gpu.to_json()), "tvm_version": tvm_version(),
                    "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "round": self.build_round,
                    "workloads": bundle.workloads, "candidates": bundle.candidates}
        with open(os.path.join(bundle.path, MANIFEST), "w") as handle:
            json.dump(manifest, handle, indent=1)
        self.done.append(bundle.path)


def _task_seed(seed: int, workload_id: str) -> int:
    return int(workload_id[:8], 16) % 1_000_003 + seed * 1_000_033 + 1


def measured_rounds(data_dir: str, arch: str) -> tuple[dict[str, list[dict]], int]:
    """What earlier rounds measured on GPUs of `arch` in a dataset folder: per workload its rows
    (program_hash, trace_json, status, latency_s), and the last round found (1 where rows predate rounds)."""
    from cwm_bench.rows.store import DatasetStore

    table = DatasetStore(data_dir, readonly=True).read(
        "records", ["workload_id", "program_hash", "trace_json", "status", "latency_s", "hw_kind", "hw_arch",
                    "protocol"])
    by_workload: dict[str, list[dict]] = {}
    last = 0
    for r in table.to_pylist():
        if r["hw_kind"] != "gpu" or r["hw_arch"] != arch:
            continue
        by_workload.setdefault(r["workload_id"], []).append(r)
        try:
            last = max(last, int(json.loads(r["protocol"] or "{}").get("round", 1)))
        except (ValueError, TypeError, AttributeError):
            last = max(last, 1)
    return by_workload, last


def _evolutionary(generator: CandidateGenerator, rows: list[dict], per_task: int) -> list[Candidate]:
    """`per_task` new candidates from MetaSchedule's evolutionary search, its XGB model trained on `rows`."""
    generator.remember(sorted({r["program_hash"] for r in rows}))
    generator.observe_records(rows)
    out: list[Candidate] = []
    empty = 0
    while len(out) < per_task and empty < 3:
        got = generator.evolutionary(per_task - len(out))
        empty = 0 if got else empty + 1
        out.extend(got)
    return out


def build_cuda_bundle(workloads: list[Workload], gpu: HardwareDescriptor, out_dir: str, per_task: int,
                      seed: int = 0, max_bundle_mb: float = 32.0, build_workers: int | None = None,
                      build_timeout_s: float = 120.0, max_attempts: int = 64, log=print,
                      from_dir: str | None = None) -> list[str]:
    """Draw `per_task` candidates per workload, build them for `gpu`, write bundles; returns the
    bundle folders. Candidates that fail to build stay in the bundle (status `build_error`).

    Without `from_dir`: random candidates (round 1). With it: a next round of evolutionary candidates,
    MetaSchedule's search guided by XGB trained on what `from_dir` measured on this GPU architecture
    (programs already there are never drawn again); workloads it has no measurement of are skipped."""
    target = target_for(gpu)
    target_json = str(target)
    measured, last_round = measured_rounds(from_dir, gpu.arch) if from_dir else ({}, 0)
    if from_dir and not measured:
        raise ValueError(f"{from_dir} holds no measured {gpu.arch} records to seed the search with")
    os.makedirs(out_dir, exist_ok=True)
    builder = ParallelBuilder(target_json, build_workers, build_timeout_s, device_binaries=True)
    writer = BundleWriter(out_dir, target_json, gpu, int(max_bundle_mb * 2**20), builder.device_binaries_dir,
                          build_round=last_round + 1)
    try:
        for w in workloads:
            generator = CandidateGenerator(w, target, seed=_task_seed(seed, w.workload_id) + 7919 * last_round)
            if from_dir:
                rows = measured.get(w.workload_id)
                if not any(r["status"] == "ok" for r in rows or []):
                    log(f"{w.task_name}: no ok record in {from_dir}; skipped")
                    continue
                candidates = _evolutionary(generator, rows or [], per_task)
            else:
                candidates = generator.random(per_task, max_attempts_per_candidate=max_attempts)
            ref_mod = reference_module(w.mod, target)
            items = [(record_id(w.workload_id, c.program_hash), c.mod) for c in candidates]
            if ref_mod is not None:
                items.append((f"ref-{w.workload_id}", ref_mod))
            builds = builder.build(items)
            reference = builds[-1] if ref_mod is not None and builds[-1].lib_path else None
            if ref_mod is not None and reference is None:
                log(f"{w.task_name}: reference did not build, outputs go unchecked ({builds[-1].error})")
            ok = 0
            for c, b in zip(candidates, builds, strict=False):
                row = record_row(
                    workload_id=w.workload_id, program_hash=c.program_hash, trace_json=c.trace_json,
                    features=c.features, target_json=target_json, hardware=gpu,
                    status="ok" if b.status == "ok" else b.status, latencies_s=[], error=b.error,
                    checked=False, origin=c.origin, design_space=c.design_space, seed=c.seed, protocol_json="")
                row["latency_s"] = None  # pending: no measurement yet
                writer.add(w, reference, c, b, row)
                ok += b.status == "ok"
            builder.discard(builds)
            log(f"{w.task_name}: {len(candidates)} candidates, {ok} built "
                f"({generator.stats.invalid} invalid samples, {generator.stats.duplicates} duplicates)")
        writer.close_current()
    finally:
        builder.close()
    return writer.done
