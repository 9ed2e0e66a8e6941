"""The collection pipeline: workload -> candidates -> build -> measure -> rows, one batch at a time.

Builds of a batch run in parallel; measurement waits until they are done, because on a small
machine a compile on the other core would disturb the timings. Every batch is one atomic shard, so
a killed collection loses at most the batch in flight and resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from cwm_bench.build.builder import ParallelBuilder
from cwm_bench.candidates.actions import replay_trace
from cwm_bench.candidates.generate import Candidate, CandidateGenerator, SearchConfig
from cwm_bench.hardware import HardwareDescriptor, target_for
from cwm_bench.measure.protocol import MeasureProtocol
from cwm_bench.measure.rpc import RpcConfig
from cwm_bench.measure.rpc_runner import RpcRunner
from cwm_bench.measure.runner import MeasureItem, MeasureResult, Runner
from cwm_bench.rows.records import provenance, record_row, workload_row
from cwm_bench.rows.store import DatasetStore
from cwm_bench.workload.workload import Workload


@dataclass(frozen=True)
class CollectConfig:
    per_task: int = 64  # records per (workload, hardware), errors included
    batch_size: int = 16
    evolutionary_fraction: float = 0.5  # the rest are random; random ones come first
    seed: int = 0
    build_workers: int | None = None
    build_timeout_s: float = 120.0
    protocol: MeasureProtocol = field(default_factory=MeasureProtocol)
    search: SearchConfig = field(default_factory=SearchConfig)
    rpc: RpcConfig | None = None  # measure on the RPC servers of a tracker instead of this machine

    def __post_init__(self) -> None:
        problems = config_problems(self)
        if problems:
            raise ValueError("; ".join(problems))


def config_problems(config: CollectConfig) -> list[str]:
    """What is out of range in a collection's settings (the CLI's click ranges say the same)."""
    p = config.protocol
    checks = [
        (config.per_task >= 1, f"per_task {config.per_task} (must be >= 1)"),
        (config.batch_size >= 1, f"batch_size {config.batch_size} (must be >= 1)"),
        (0.0 <= config.evolutionary_fraction <= 1.0,
         f"evolutionary_fraction {config.evolutionary_fraction} (must be in [0, 1])"),
        (config.seed >= 0, f"seed {config.seed} (must be >= 0)"),
        (config.build_workers is None or config.build_workers >= 1,
         f"build_workers {config.build_workers} (must be >= 1)"),
        (config.build_timeout_s > 0, f"build_timeout_s {config.build_timeout_s} (must be > 0)"),
        (p.rounds >= 1, f"rounds {p.rounds} (must be >= 1)"),
        (p.repeats_per_round >= 1, f"repeats_per_round {p.repeats_per_round} (must be >= 1)"),
        (p.min_repeat_ms >= 0, f"min_repeat_ms {p.min_repeat_ms} (must be >= 0)"),
        (p.warmup_runs >= 0, f"warmup_runs {p.warmup_runs} (must be >= 0)"),
        (0.0 <= p.check_fraction <= 1.0, f"check_fraction {p.check_fraction} (must be in [0, 1])"),
        (p.timeout_s > 0, f"timeout_s {p.timeout_s} (must be > 0)"),
    ]
    return [message for ok, message in checks if not ok]


@dataclass
class TaskSummary:
    workload: Workload
    counts: dict[str, int]
    best_latency_s: float | None

    @property
    def gflops(self) -> float | None:
        if not self.best_latency_s or not self.workload.flops:
            return None
        return self.workload.flops / self.best_latency_s / 1e9


def _task_seed(seed: int, workload_id: str, already: int) -> int:
    digest = hashlib.sha1(f"{seed}:{workload_id}:{already}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % (2**31 - 2) + 1


class Collector:
    """Runs the pipeline for a list of workloads on one hardware into one dataset folder.

    A context manager: `with Collector(...) as c:` closes its workers and releases the folder's lock."""

    def __init__(self, hardware: HardwareDescriptor, out_dir: str, config: CollectConfig = CollectConfig(),
                 on_records: Callable[[int, str], None] | None = None, log: Callable[[str], None] = print):
        self.hardware = hardware
        self.config = config
        self.target = target_for(hardware)
        self.target_json = str(self.target)
        self.protocol_json = config.protocol.to_json()
        self.on_records = on_records or (lambda n, task: None)
        self.log = log
        self._builder: ParallelBuilder | None = None
        self._runner: Runner | RpcRunner | None = None
        self.stage_seconds: Counter = Counter()  # wall time per pipeline stage, for benchmarks
        # Last: locks the folder (DatasetBusyError while another process writes to it).
        self.store = DatasetStore(out_dir, provenance(hardware, self.target_json, self.protocol_json))

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[name] += time.perf_counter() - started

    # -- public --------------------------------------------------------------------------------
    def remaining(self, workloads: list[Workload]) -> int:
        progress = self.store.progress(self.hardware.hw_id)
        return sum(max(0, self.config.per_task - (progress[w.workload_id].count if w.workload_id in progress
                                                 else 0)) for w in workloads)

    def run(self, workloads: list[Workload]) -> list[TaskSummary]:
        known = self.store.known_keys("workloads")
        self.store.write("workloads", [workload_row(w) for w in workloads if w.workload_id not in known])
        try:
            for workload in workloads:
                self._collect_task(workload)
        finally:
            self.close()
        return self.summaries(workloads)

    def summaries(self, workloads: list[Workload]) -> list[TaskSummary]:
        table = self.store.read("records", ["workload_id", "hw_id", "status", "latency_s"])
        columns = [table.column(c).to_pylist() for c in ("workload_id", "hw_id", "status", "latency_s")]
        out = {w.workload_id: TaskSummary(w, {}, None) for w in workloads}
        for wid, hw, status, latency in zip(*columns, strict=True):
            if hw != self.hardware.hw_id or wid not in out:
                continue
            s = out[wid]
            s.counts[status] = s.counts.get(status, 0) + 1
            if status == "ok" and latency is not None:
                s.best_latency_s = latency if s.best_latency_s is None else min(s.best_latency_s, latency)
        return list(out.values())

    def close(self) -> None:
        if self._builder is not None:
            self._builder.close()
            self._builder = None
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        self.store.close()

    # -- one task ------------------------------------------------------------------------------
    def _collect_task(self, w: Workload) -> None:
        cfg = self.config
        progress = self.store.progress(self.hardware.hw_id).get(w.workload_id)
        done = progress.count if progress else 0
        if done >= cfg.per_task:
            return
        by_origin = dict(progress.by_origin) if progress else {}
        with self._stage("search"):
            generator = CandidateGenerator(w, self.target, seed=_task_seed(cfg.seed, w.workload_id, done),
                                           config=cfg.search)
            if progress:
                generator.remember(sorted(progress.program_hashes))
                self._replay_history(generator, w)
        random_quota = math.ceil(cfg.per_task * (1.0 - cfg.evolutionary_fraction))
        rng = np.random.default_rng(generator.seed)
        reference: str | None = None
        empty_draws = 0
        while done < cfg.per_task and empty_draws < 3:
            n = min(cfg.batch_size, cfg.per_task - done)
            want_random = by_origin.get("random", 0) < random_quota
            with self._stage("search"):
                candidates = generator.random(min(n, random_quota - by_origin.get("random", 0))) \
                    if want_random else generator.evolutionary(n)
                if not candidates and not want_random:
                    candidates = generator.random(n)  # the search found nothing new: fall back
            if not candidates:
                empty_draws += 1
                continue
            empty_draws = 0
            check = rng.random(len(candidates)) < cfg.protocol.check_fraction
            if check.any() and reference is None:
                reference = self._build_reference(w)
            rows = self._measure_batch(w, candidates, check, reference)
            with self._stage("write"):
                self.store.write("records", rows)
            with self._stage("search"):
                generator.observe(candidates, [r["latency_s"] for r in rows])
            for c in candidates:
                by_origin[c.origin] = by_origin.get(c.origin, 0) + 1
            done += len(rows)
            self.on_records(len(rows), w.task_name)
        if done < cfg.per_task:
            self.log(f"{w.task_name}: only {done} distinct programs found (asked for {cfg.per_task})")

    def _replay_history(self, generator: CandidateGenerator, w: Workload) -> None:
        """Resume: teach the cost model what earlier runs measured for this task."""
        table = self.store.read("records", ["workload_id", "hw_id", "trace_json", "latency_s", "status"])
        rows = [r for r in table.to_pylist() if r["workload_id"] == w.workload_id
                and r["hw_id"] == self.hardware.hw_id and r["status"] == "ok"]
        candidates, latencies = [], []
        for r in rows:
            sch = replay_trace(r["trace_json"], w.mod)
            candidates.append(Candidate(w.workload_id, sch, "imported", 0, -1, "", r["trace_json"]))
            latencies.append(r["latency_s"])
        if candidates:
            generator.observe(candidates, latencies)

    def _build_reference(self, w: Workload) -> str | None:
        result = self.builder.build([(f"reference-{w.workload_id}", w.mod)])[0]
        if result.status != "ok":
            self.log(f"{w.task_name}: the unscheduled program did not build, outputs go unchecked "
                     f"({result.error})")
        return result.lib_path

    def _measure_batch(self, w: Workload, candidates: list[Candidate], check: np.ndarray,
                       reference: str | None) -> list[dict]:
        with self._stage("build"):
            builds = self.builder.build([(c.program_hash, c.mod) for c in candidates])
        arg_specs = [(list(a.shape), a.dtype) for a in w.args]
        items = [MeasureItem(b.key, b.lib_path, w.workload_id, arg_specs, reference if flag else None)
                 for b, flag in zip(builds, check, strict=True) if b.status == "ok" and b.lib_path]
        with self._stage("measure"):
            measured = {r.key: r for r in self.runner.measure(items)}
        self.builder.discard(builds)
        rows = []
        self.stage_seconds["kernel"] += sum(sum(r.latencies_s) for r in measured.values())
        for c, b in zip(candidates, builds, strict=True):
            m = measured.get(b.key) or MeasureResult(b.key, b.status, [], b.error)
            rows.append(record_row(
                workload_id=w.workload_id, program_hash=c.program_hash, trace_json=c.trace_json,
                features=c.features, target_json=self.target_json, hardware=self.hardware, status=m.status,
                latencies_s=m.latencies_s, error=m.error, checked=m.checked, origin=c.origin,
                design_space=c.design_space, seed=c.seed, protocol_json=self.protocol_json,
                measured_by=m.measured_by))
        return rows

    @property
    def builder(self) -> ParallelBuilder:
        if self._builder is None:
            self._builder = ParallelBuilder(self.target_json, self.config.build_workers,
                                            self.config.build_timeout_s)
        return self._builder

    @property
    def runner(self) -> Runner | RpcRunner:
        if self._runner is None:
            device = "cuda" if self.hardware.kind == "gpu" else "cpu"
            if self.config.rpc is not None:
                self._runner = RpcRunner(self.config.protocol, self.config.rpc, device, seed=self.config.seed,
                                         expected_cpu=self.hardware.arch if device == "cpu" else None, log=self.log)
            else:
                self._runner = Runner(self.config.protocol, device=device, num_threads=self.hardware.num_cores,
                                      seed=self.config.seed)
        return self._runner


__all__ = ["CollectConfig", "Collector", "TaskSummary"]
