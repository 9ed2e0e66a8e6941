"""The collection pipeline: workload -> candidates -> build -> measure -> rows, one batch at a time.

Builds of a batch run in parallel. Serially (the default where overlap is not verified), measurement
waits until they are done, because a compile on another core can disturb the timings. Pipelined
(`overlap=True`), the measuring worker is pinned to its own cores (`measure_cores`) and, while batch
k is measured, batch k+1 is searched and built on the other cores; the search then knows the
measurements up to batch k-1 (the cost model lags one batch). Once batch k is measured, the
measuring cores build too, until batch k+1 is built. Every row's protocol says whether its batch
overlapped a search or build (`overlapped_build`). Every batch is one atomic shard, so a killed
collection loses at most the batches in flight (two when pipelined) and resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from cwm_bench.build.builder import BuildResult, ParallelBuilder
from cwm_bench.candidates.generate import Candidate, CandidateGenerator, SearchConfig
from cwm_bench.hardware import HardwareDescriptor, target_for
from cwm_bench.measure.cores import usable_cpus
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
    # Local measurement pinned to these cores (its thread pool sized to them); the other cores search
    # and build. None: every core, between builds.
    measure_cores: tuple[int, ...] | None = None
    overlap: bool = False  # search and build batch k+1 while batch k is measured

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
        (config.measure_cores is None or config.rpc is None,
         "measure_cores is for measuring on this machine, not over RPC"),
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


@dataclass
class _Batch:
    """One batch on its way through the pipeline: searched, then built, then measured, then written."""

    workload: Workload
    generator: CandidateGenerator
    candidates: list[Candidate]
    check: np.ndarray
    reference: str | None
    builds: list[BuildResult] = field(default_factory=list)
    measured: Future | None = None
    overlapped: bool = False  # a search or build ran while it was measured


class Collector:
    """Runs the pipeline for a list of workloads on one hardware into one dataset folder.

    A context manager: `with Collector(...) as c:` closes its workers and releases the folder's lock."""

    def __init__(self, hardware: HardwareDescriptor, out_dir: str, config: CollectConfig = CollectConfig(),
                 on_records: Callable[[int, str], None] | None = None, log: Callable[[str], None] = print,
                 measure_handler: str = "cwm_bench.measure.worker:handle"):
        self.hardware = hardware
        self.measure_handler = measure_handler  # the measuring worker's code (tests script a GPU with it)
        self.config = config
        self.measure_cpus = set(config.measure_cores) if config.measure_cores else None
        self.build_cpus = set(usable_cpus()) - self.measure_cpus if self.measure_cpus else None
        if self.measure_cpus and hardware.kind == "cpu" and hardware.num_cores != len(self.measure_cpus):
            raise ValueError(f"the hardware descriptor says {hardware.num_cores} cores but measurement is pinned "
                             f"to {len(self.measure_cpus)}: describe what measures (detect_cpu(num_cores))")
        if config.overlap and hardware.kind == "cpu" and config.rpc is None and not self.measure_cpus:
            raise ValueError("overlap on a local CPU measures on its own cores: set measure_cores")
        if hardware.kind == "gpu" and config.protocol.cache_flush \
                and not hardware.details.get("l2_cache_size_bytes"):
            raise ValueError(f"{hardware.name}: its L2 size is unknown, so caches cannot be flushed between "
                             f"timings (measure with cache_flush off)")
        if self.build_cpus is not None and not self.build_cpus:
            raise ValueError("measure_cores leave no core to build on")
        self.target = target_for(hardware)
        self.target_json = str(self.target)
        self.protocol_json = config.protocol.to_json()
        self.on_records = on_records or (lambda n, task: None)
        self.log = log
        self._builder: ParallelBuilder | None = None
        self._runner: Runner | RpcRunner | None = None
        self._measurer: ThreadPoolExecutor | None = None
        self._in_flight: _Batch | None = None  # measuring now (pipelined)
        self._own_affinity: set[int] | None = None
        self.stage_seconds: Counter = Counter()  # wall time per pipeline stage, for benchmarks
        self.batches = Counter()  # "overlapped" / "alone": how the batches were measured
        self._work_done = 0  # search and build stages entered so far
        # Last: locks the folder (DatasetBusyError while another process writes to it).
        self.store = DatasetStore(out_dir, provenance(hardware, self.target_json, self.protocol_json))

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        self._work_done += name in ("search", "build")  # tells whether work ran beside a measurement
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
            self._start_workers()
            batches = (batch for w in workloads for batch in self._task_batches(w))
            while True:
                pending = self._in_flight
                measuring = not self._measuring_cores_idle()
                work_before = self._work_done
                batch = next(batches, None)
                if pending is not None and measuring and self._work_done != work_before:
                    pending.overlapped = True  # a search (and the next batch's build) ran beside it
                if batch is None:
                    break
                with self._stage("build"):
                    batch.builds = self.builder.build([(c.program_hash, c.mod) for c in batch.candidates],
                                                      lender_free=self._measuring_cores_idle)
                if pending is not None:
                    self._finish(pending)
                self._start_measuring(batch)
                if not self.config.overlap:
                    self._finish(batch)
            if self._in_flight is not None:
                self._finish(self._in_flight)
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
        try:
            if self._runner is not None:
                # first: a batch still being measured (Ctrl-C, an error here) fails fast instead of
                # restarting its worker, so the measuring thread ends and the executor can be joined
                self._runner.close()
            if self._measurer is not None:
                self._measurer.shutdown(wait=True, cancel_futures=True)
                self._measurer = None
            self._runner = None
            if self._builder is not None:
                self._builder.close()
                self._builder = None
        finally:
            if self._own_affinity is not None:
                os.sched_setaffinity(0, self._own_affinity)
                self._own_affinity = None
            self.store.close()

    # -- the pipeline --------------------------------------------------------------------------
    def _start_workers(self) -> None:
        """Pin this process (the search) to the build cores and start all workers at once."""
        if self.build_cpus:
            self._own_affinity = set(os.sched_getaffinity(0))
            os.sched_setaffinity(0, self.build_cpus)
        if self.config.overlap:
            self._measurer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cwm-measure")
            runner = self.runner
            if isinstance(runner, Runner):  # its TVM import overlaps the build workers' imports
                self._measurer.submit(runner.worker.ensure_started)
        self.builder.spawn()  # their imports overlap the first task's design-space generation

    def _measuring_cores_idle(self) -> bool:
        pending = self._in_flight
        return pending is None or pending.measured is None or pending.measured.done()

    def _task_batches(self, w: Workload) -> Iterator[_Batch]:
        """The batches of one task, searched one at a time (each as the pipeline asks for it)."""
        cfg = self.config
        progress = self.store.progress(self.hardware.hw_id).get(w.workload_id)
        done = progress.count if progress else 0
        if done >= cfg.per_task:
            return
        by_origin = dict(progress.by_origin) if progress else {}
        with self._stage("search"):
            generator = CandidateGenerator(w, self.target, seed=_task_seed(cfg.seed, w.workload_id, done),
                                           config=self._search_config())
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
            # most random GPU samples fail the postprocessors (thread and shared-memory limits)
            attempts = 64 if self.hardware.kind == "gpu" else 8
            with self._stage("search"):
                candidates = generator.random(min(n, random_quota - by_origin.get("random", 0)), attempts) \
                    if want_random else generator.evolutionary(n)
                if not candidates and not want_random:
                    candidates = generator.random(n, attempts)  # the search found nothing new: fall back
            if not candidates:
                empty_draws += 1
                continue
            empty_draws = 0
            check = rng.random(len(candidates)) < cfg.protocol.check_fraction
            if check.any() and reference is None:
                reference = self._build_reference(w)
            for c in candidates:
                by_origin[c.origin] = by_origin.get(c.origin, 0) + 1
            done += len(candidates)  # every candidate becomes a row, measured or not
            yield _Batch(w, generator, candidates, check, reference)
        if done < cfg.per_task:
            self.log(f"{w.task_name}: only {done} distinct programs found (asked for {cfg.per_task})")

    def _search_config(self) -> SearchConfig:
        if self.build_cpus:  # the search's own thread pool stays on the build cores
            return dataclasses.replace(self.config.search, num_threads=len(self.build_cpus))
        return self.config.search

    def _start_measuring(self, batch: _Batch) -> None:
        arg_specs = [(list(a.shape), a.dtype) for a in batch.workload.args]
        wid = batch.workload.workload_id
        items = [MeasureItem(b.key, b.lib_path, wid, arg_specs, batch.reference if flag else None)
                 for b, flag in zip(batch.builds, batch.check, strict=True) if b.status == "ok" and b.lib_path]
        if self._measurer is not None:
            batch.measured = self._measurer.submit(self._measure, items)
            self._in_flight = batch
        else:
            batch.measured = Future()
            batch.measured.set_result(self._measure(items))

    def _measure(self, items: list[MeasureItem]) -> dict[str, MeasureResult]:
        with self._stage("measure"):
            return {r.key: r for r in self.runner.measure(items)}

    def _finish(self, batch: _Batch) -> None:
        """Wait for a batch's measurements, write its rows, and teach its task's search."""
        assert batch.measured is not None
        with self._stage("wait"):  # pipelined: the time search and builds spent waiting for measurement
            measured = batch.measured.result()
        if self._in_flight is batch:
            self._in_flight = None
        self.builder.discard(batch.builds)
        self.batches["overlapped" if batch.overlapped else "alone"] += 1
        self.stage_seconds["kernel"] += sum(sum(r.latencies_s) for r in measured.values())
        protocol_json = json.dumps({**json.loads(self.protocol_json), "overlapped_build": batch.overlapped},
                                   sort_keys=True)
        rows = []
        for c, b in zip(batch.candidates, batch.builds, strict=True):
            m = measured.get(b.key) or MeasureResult(b.key, b.status, [], b.error)
            rows.append(record_row(
                workload_id=batch.workload.workload_id, program_hash=c.program_hash, trace_json=c.trace_json,
                features=c.features, target_json=self.target_json, hardware=self.hardware, status=m.status,
                latencies_s=m.latencies_s, error=m.error, checked=m.checked, origin=c.origin,
                design_space=c.design_space, seed=c.seed, protocol_json=protocol_json,
                measured_by=m.measured_by))
        with self._stage("write"):
            self.store.write("records", rows)
        with self._stage("search"):
            batch.generator.observe(batch.candidates, [r["latency_s"] for r in rows])
        self.on_records(len(rows), batch.workload.task_name)

    def _replay_history(self, generator: CandidateGenerator, w: Workload) -> None:
        """Resume: teach the cost model what earlier runs measured for this task."""
        table = self.store.read("records", ["workload_id", "hw_id", "trace_json", "latency_s", "status"])
        generator.observe_records([r for r in table.to_pylist() if r["workload_id"] == w.workload_id
                                   and r["hw_id"] == self.hardware.hw_id])

    def _build_reference(self, w: Workload) -> str | None:
        mod = w.mod
        if self.hardware.kind == "gpu":  # an unscheduled program has no thread bindings: dlight's schedule
            from cwm_bench.cuda.build import reference_module

            mod = reference_module(w.mod, self.target)
            if mod is None:
                self.log(f"{w.task_name}: no GPU reference schedule applies, outputs go unchecked")
                return None
        self._work_done += 1
        result = self.builder.build([(f"reference-{w.workload_id}", mod)])[0]
        if result.status != "ok":
            self.log(f"{w.task_name}: the unscheduled program did not build, outputs go unchecked "
                     f"({result.error})")
        return result.lib_path

    @property
    def builder(self) -> ParallelBuilder:
        if self._builder is None:
            lend = self.measure_cpus if self.config.overlap else None
            self._builder = ParallelBuilder(self.target_json, self.config.build_workers, self.config.build_timeout_s,
                                            cpus=self.build_cpus, lender_cpus=lend)
        return self._builder

    @property
    def runner(self) -> Runner | RpcRunner:
        if self._runner is None:
            device = "cuda" if self.hardware.kind == "gpu" else "cpu"
            gpu = device == "cuda"
            # GPU: bytes copied on the device before each timing (twice the L2: every timing starts cold)
            flush = 2 * int(self.hardware.details.get("l2_cache_size_bytes", 0)) \
                if gpu and self.config.protocol.cache_flush else 0
            if self.config.rpc is not None:
                self._runner = RpcRunner(self.config.protocol, self.config.rpc, device, seed=self.config.seed,
                                         expected_cpu=None if gpu else self.hardware.arch, log=self.log,
                                         expected_gpu=(self.hardware.name, self.hardware.arch) if gpu else None,
                                         flush_bytes=flush)
            else:
                self._runner = Runner(self.config.protocol, device=device,
                                      num_threads=None if gpu else self.hardware.num_cores, seed=self.config.seed,
                                      cpus=self.measure_cpus, flush_bytes=flush, handler=self.measure_handler)
        return self._runner


__all__ = ["CollectConfig", "Collector", "TaskSummary"]
