"""Does building on some cores disturb timings on the others? Measured, per machine, before the
collector overlaps the two.

The same built programs are timed four times in fresh measuring workers pinned to the measuring
cores, interleaved in time: quiet (the other cores idle), overlapped (the other cores compiling
programs in a loop, as the pipelined collector's builders do), quiet, overlapped. Printed are the
pairwise ordering agreements quiet-vs-quiet and overlapped-vs-overlapped over pairs of programs of
one task, each with a 95% bootstrap interval (programs resampled within each task). Overlap is
allowed where the overlapped agreement is at least `THRESHOLD`; the verdict is saved per machine
(hw_id of what measures, and the core split) for `cwm-bench collect --overlap auto`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from cwm_bench.build.builder import ParallelBuilder
from cwm_bench.cache import cache_root
from cwm_bench.hardware import HardwareDescriptor
from cwm_bench.measure.cores import CorePlan
from cwm_bench.measure.protocol import MeasureProtocol, summarize
from cwm_bench.measure.runner import MeasureItem, Runner

THRESHOLD = 0.95  # overlapped agreement needed before overlap is the default


@dataclass
class OverlapVerdict:
    hw_id: str
    measure_cores: list[int]
    build_cores: list[int]
    programs: int
    tasks: int
    quiet: float
    quiet_ci: list[float]
    overlapped: float
    overlapped_ci: list[float]
    protocol: str
    checked_at: str
    threshold: float = THRESHOLD

    @property
    def ok(self) -> bool:
        return self.overlapped >= self.threshold

    def lines(self) -> list[str]:
        q, o = self.quiet_ci, self.overlapped_ci
        return [f"{self.programs} programs over {self.tasks} tasks, two fresh runs each way, "
                f"measuring on core(s) {_cores(self.measure_cores)}, building on {_cores(self.build_cores)}:",
                f"  pairwise ordering agreement, quiet      : {self.quiet:.3f} [{q[0]:.3f}, {q[1]:.3f}]",
                f"  pairwise ordering agreement, overlapped : {self.overlapped:.3f} [{o[0]:.3f}, {o[1]:.3f}]",
                f"  overlap {'allowed' if self.ok else 'refused'}: overlapped agreement "
                f"{'>=' if self.ok else '<'} {self.threshold}"]


def _cores(cores: list[int]) -> str:
    return ",".join(map(str, cores))


def verdict_path(hardware: HardwareDescriptor, plan: CorePlan) -> str:
    name = f"{hardware.hw_id}-m{_cores(list(plan.measure))}-b{len(plan.build)}.json"
    return os.path.join(cache_root(), "overlap", name)


def save_verdict(verdict: OverlapVerdict, hardware: HardwareDescriptor, plan: CorePlan) -> str:
    path = verdict_path(hardware, plan)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".partial"
    with open(tmp, "w") as handle:
        json.dump(asdict(verdict), handle, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return path


def load_verdict(hardware: HardwareDescriptor, plan: CorePlan) -> OverlapVerdict | None:
    try:
        with open(verdict_path(hardware, plan)) as handle:
            return OverlapVerdict(**json.load(handle))
    except (OSError, ValueError, TypeError):
        return None


def agreement_with_interval(a: dict[str, float], b: dict[str, float], task_of: dict[str, str],
                            samples: int = 1000, seed: int = 0) -> tuple[float, list[float]]:
    """Pooled pairwise agreement of two runs over same-task pairs, and its 95% bootstrap interval
    (programs resampled with replacement within each task; a program paired with itself is no pair)."""
    tasks: dict[str, list[str]] = {}
    for key in sorted(set(a) & set(b)):
        tasks.setdefault(task_of[key], []).append(key)
    per_task = []
    for keys in tasks.values():
        x = np.array([a[k] for k in keys])
        y = np.array([b[k] for k in keys])
        dx, dy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])
        compared = (dx != 0) & (dy != 0)
        per_task.append((compared & (dx == dy), compared))

    def pooled(draws: list[np.ndarray] | None) -> float:
        agree = total = 0
        for index, (same, compared) in enumerate(per_task):
            if draws is None:
                agree, total = agree + same.sum(), total + compared.sum()
            else:
                pick = draws[index]
                agree += same[np.ix_(pick, pick)].sum()
                total += compared[np.ix_(pick, pick)].sum()
        return float(agree / total) if total else float("nan")

    rng = np.random.default_rng(seed)
    boot = [pooled([rng.integers(0, len(s), len(s)) for s, _ in per_task]) for _ in range(samples)]
    return pooled(None), [float(np.nanpercentile(boot, 2.5)), float(np.nanpercentile(boot, 97.5))]


class _BuildLoad:
    """Compiles the given programs over and over on the build cores until stopped."""

    def __init__(self, target_json: str, modules: list[tuple[str, object]], cpus: set[int]):
        self.builder = ParallelBuilder(target_json, len(cpus), cpus=cpus)
        self.modules = modules
        self.stop = threading.Event()
        self.builds = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._guarded, daemon=True)

    def _guarded(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001  (re-raised in __exit__: no load means no verdict)
            self.error = exc

    def _loop(self) -> None:
        while not self.stop.is_set():
            for start in range(0, len(self.modules), len(self.builder.pool.workers)):
                if self.stop.is_set():
                    return
                chunk = self.modules[start:start + len(self.builder.pool.workers)]
                self.builder.discard(self.builder.build(chunk))
                self.builds += len(chunk)

    def __enter__(self) -> _BuildLoad:
        self.builder.spawn()
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join()
        self.builder.close()
        if self.error is not None:
            raise RuntimeError(f"the build load beside the timing run failed: {self.error}") from self.error
        if not self.builds:
            raise RuntimeError("no build finished beside the timing run: that run was not overlapped")


def built_items(builder: ParallelBuilder, programs: list[tuple[str, str, object, list]]) -> list[MeasureItem]:
    """Build `programs` ((key, workload_id, IRModule, arg_specs)); the ones that built, ready to time."""
    built = builder.build([(key, mod) for key, _, mod, _ in programs])
    return [MeasureItem(b.key, b.lib_path, wid, specs)
            for b, (_, wid, _, specs) in zip(built, programs, strict=True) if b.status == "ok" and b.lib_path]


def timed_run(items: list[MeasureItem], protocol: MeasureProtocol, seed: int,
              cpus: set[int] | None = None) -> dict[str, float]:
    """key -> median latency of one timing run in a fresh measuring worker (pinned to `cpus`)."""
    runner = Runner(protocol, seed=seed, cpus=cpus)
    try:
        return {r.key: summarize(r.latencies_s) for r in runner.measure(items)
                if r.status == "ok" and r.latencies_s}
    finally:
        runner.close()


def check_overlap(hardware: HardwareDescriptor, plan: CorePlan, target_json: str,
                  programs: list[tuple[str, str, object, list]], protocol: MeasureProtocol | None = None,
                  log: Callable[[str], None] = print) -> OverlapVerdict:
    """Time `programs` ((key, workload_id, IRModule, arg_specs)) quiet and overlapped, twice each."""
    protocol = protocol or MeasureProtocol()
    builder = ParallelBuilder(target_json)  # its libraries live until the timing runs are done
    try:
        log(f"building {len(programs)} programs")
        items = built_items(builder, programs)
        builder.pool.close()
        task_of = {it.key: it.workload_id for it in items}
        modules = [(f"load-{key}", mod) for key, _, mod, _ in programs]
        runs: dict[str, list[dict[str, float]]] = {"quiet": [], "overlapped": []}
        for index, kind in enumerate(["quiet", "overlapped", "quiet", "overlapped"]):
            log(f"timing run {index + 1}/4 ({kind})")
            if kind == "quiet":
                runs[kind].append(timed_run(items, protocol, index, set(plan.measure)))
            else:
                with _BuildLoad(target_json, modules, set(plan.build)) as load:
                    runs[kind].append(timed_run(items, protocol, index, set(plan.measure)))
                log(f"  {load.builds} builds ran beside it")
        quiet, quiet_ci = agreement_with_interval(*runs["quiet"], task_of)
        over, over_ci = agreement_with_interval(*runs["overlapped"], task_of)
    finally:
        builder.close()
    return OverlapVerdict(hw_id=hardware.hw_id, measure_cores=list(plan.measure), build_cores=list(plan.build),
                          programs=len(items), tasks=len(set(task_of.values())), quiet=quiet, quiet_ci=quiet_ci,
                          overlapped=over, overlapped_ci=over_ci, protocol=protocol.to_json(),
                          checked_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def random_programs(workloads, target, per_task: int, seed: int = 0) -> list[tuple[str, str, object, list]]:
    """`per_task` distinct random schedules of each workload, as `check_overlap` takes them."""
    from cwm_bench.candidates.generate import CandidateGenerator

    out = []
    for w in workloads:
        specs = [(list(a.shape), a.dtype) for a in w.args]
        for c in CandidateGenerator(w, target, seed=seed + 1).random(per_task):
            out.append((c.program_hash, w.workload_id, c.mod, specs))
    return out


def dataset_programs(root: str, workloads, per_task: int, seed: int = 0) -> list[tuple[str, str, object, list]]:
    """Up to `per_task` ok programs of each workload from a dataset folder (traces replayed)."""
    from cwm_bench.candidates.actions import replay_trace
    from cwm_bench.rows.store import DatasetStore

    table = DatasetStore(root, readonly=True).read("records", ["workload_id", "program_hash", "trace_json", "status"])
    by_id = {w.workload_id: w for w in workloads}
    rows: dict[str, list[dict]] = {}
    for r in table.to_pylist():
        if r["status"] == "ok" and r["workload_id"] in by_id:
            rows.setdefault(r["workload_id"], []).append(r)
    rng = np.random.default_rng(seed)
    out = []
    for wid, task_rows in sorted(rows.items()):
        w = by_id[wid]
        specs = [(list(a.shape), a.dtype) for a in w.args]
        for index in rng.permutation(len(task_rows))[:per_task]:
            r = task_rows[int(index)]
            out.append((r["program_hash"], wid, replay_trace(r["trace_json"], w.mod).mod, specs))
    return out
