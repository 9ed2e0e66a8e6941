"""`cwm-bench tune`: MetaSchedule's evolutionary search, unchanged, with a contender's cost model,
through our builder and measurer, exactly `budget` real measurements per task, logged as rows.

Every contender gets the same search (`ms.search_strategy.EvolutionarySearch()` with TVM's default
parameters), the same seeds, the same builder, runner and protocol: only the cost model differs.
A run resumes from its log (`run_log.py`): measured batches are committed to the search's database
and fed to the cost model before the search continues, and only the remaining trials are measured.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cwm_bench.hardware import HardwareDescriptor
from cwm_bench.measure.protocol import MeasureProtocol, summarize
from cwm_bench.tuning.contenders import Contender
from cwm_bench.tuning.run_log import RunKey, RunLog, check_config, read_run
from cwm_bench.workload.workload import Workload

# Output checks need the unscheduled program's run per task; tuning leaves them to datasets.
TUNING_PROTOCOL = MeasureProtocol(check_fraction=0.0)


@dataclass
class TuneGroup:
    """What one run tunes: one task, or a network's tasks with their weights. A network run gives
    MetaSchedule's gradient task scheduler budget x tasks trials and no per-task cap (as `tune_relax`
    does): the weights and each task's progress decide where trials go."""

    name: str
    workloads: list[Workload]
    weights: list[float] = field(default_factory=list)

    @classmethod
    def task(cls, w: Workload) -> TuneGroup:
        return cls(f"{w.task_name}-{w.workload_id[:8]}", [w], [1.0])

    @classmethod
    def network(cls, network: str, workloads: list[Workload]) -> TuneGroup:
        weights = [float(sum(u.weight for u in w.networks if u.network == network) or 1) for w in workloads]
        return cls(f"network-{network}", workloads, weights)


@dataclass(frozen=True)
class TuneConfig:
    budget: int = 64  # measurements per task
    per_iter: int = 16  # candidates measured per search round
    protocol: MeasureProtocol = TUNING_PROTOCOL
    num_cores: int | None = None


def _ms_classes():
    """The MetaSchedule subclasses, made on first use (importing TVM is slow). `derived_object`
    needs the MetaSchedule base as the direct base, so the methods are written here."""
    global _TimedCostModel, _Logger
    if _TimedCostModel is None:
        from tvm.ir.utils import derived_object
        from tvm.s_tir import meta_schedule as ms

        from cwm_bench.model.metaschedule import counting_seconds

        class TimedCostModel(ms.cost_model.PyCostModel):
            """Any MetaSchedule cost model, with the seconds spent in its predict + update counted."""

            def __init__(self, inner):
                self.inner, self.seconds = inner, 0.0
                # a resumed run's logged programs: MetaSchedule's search remembers what it measured in
                # memory only, so they are scored 0 here rather than measured twice
                self.measured: set[str] = set()

            def load(self, path: str) -> None:
                self.inner.load(path)

            def save(self, path: str) -> None:
                self.inner.save(path)

            def update(self, context, candidates, results) -> None:
                with counting_seconds(self):
                    self.inner.update(context, candidates, results)

            def predict(self, context, candidates):
                with counting_seconds(self):
                    scores = self.inner.predict(context, candidates)
                    if self.measured:
                        from cwm_bench.tvm_env import structural_hash_hex

                        scores = np.array(scores, dtype=np.float64)
                        seen = [structural_hash_hex(c.sch.mod) in self.measured for c in candidates]
                        scores[np.asarray(seen, dtype=bool)] = 0.0
                    return scores

        class Logger(ms.measure_callback.PyMeasureCallback):
            """Writes each measured batch to the run's log (placed after TVM's own callbacks)."""

            def __init__(self, state: _RunState):
                self.state = state

            def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
                self.state.log_batch(task_scheduler.tasks_[task_id].ctx, task_id, list(measure_candidates),
                                     list(builder_results), list(runner_results))

        _TimedCostModel, _Logger = derived_object(TimedCostModel), derived_object(Logger)
    return _TimedCostModel, _Logger


_TimedCostModel = _Logger = None


class _RunState:
    """Counters and clocks of one run; turns batches into rows."""

    def __init__(self, log: RunLog, group: TuneGroup, contender: Contender, seed: int, hardware: HardwareDescriptor,
                 target_json: str, protocol_json: str, clocks: dict[str, Callable[[], float]], trial: int,
                 batch: int, progress: Callable[[int], None]):
        self.log, self.group, self.contender, self.seed = log, group, contender, seed
        self.hardware, self.target_json, self.protocol_json = hardware, target_json, protocol_json
        self.clocks = clocks  # name -> seconds so far (model, build, measure)
        self.trial, self.batch = trial, batch
        self.progress = progress
        self._last = {k: c() for k, c in clocks.items()}
        self._last_wall = time.perf_counter()
        self.totals = {"model_s": 0.0, "search_s": 0.0, "build_s": 0.0, "measure_s": 0.0, "log_s": 0.0}

    def log_batch(self, ctx, task_id: int, candidates: list, builds: list, runs: list) -> None:
        from tvm.s_tir import meta_schedule as ms

        from cwm_bench.candidates.actions import trace_to_json
        from cwm_bench.rows.records import record_id, record_row
        from cwm_bench.rows.schema import FEATURE_DIM
        from cwm_bench.tvm_env import structural_hash_hex

        now = time.perf_counter()
        spent = {k: c() - self._last[k] for k, c in self.clocks.items()}
        wall = now - self._last_wall
        split = {"model_s": spent["model"], "build_s": spent["build"], "measure_s": spent["measure"]}
        split["search_s"] = max(0.0, wall - sum(split.values()))
        w = self.group.workloads[task_id]
        features = [f.numpy().astype(np.float32).reshape(-1, FEATURE_DIM)
                    for f in ms.feature_extractor.PerStoreFeature().extract_from(ctx, candidates)]
        records, trials = [], []
        finished = dt.datetime.now(dt.UTC)
        for c, b, r, feats in zip(candidates, builds, runs, features, strict=True):
            status, latencies, error = _outcome(b, r)
            program = structural_hash_hex(c.sch.mod)
            records.append(record_row(
                workload_id=w.workload_id, program_hash=program, trace_json=trace_to_json(c.sch.trace),
                features=feats, target_json=self.target_json, hardware=self.hardware, status=status,
                latencies_s=latencies, error=error, checked=False, origin="tuning", design_space=0,
                seed=self.seed, protocol_json=self.protocol_json, measured_at=finished, measured_by="local"))
            trials.append({"trial": self.trial, "batch": self.batch, "workload_id": w.workload_id,
                           "record_id": record_id(w.workload_id, program), "status": status,
                           "latency_s": summarize(latencies) if status == "ok" else None,
                           "label": self.contender.label, "seed": self.seed, "finished_at": finished})
            self.trial += 1
        self.log.append_records(records)
        log_s = time.perf_counter() - now
        n = max(1, len(trials))
        for t in trials:
            t.update({k: v / n for k, v in split.items()}, log_s=log_s / n)
        self.log.append_trials(trials)
        for k, v in split.items():
            self.totals[k] += v
        self.totals["log_s"] += time.perf_counter() - now
        self.batch += 1
        self.progress(len(trials))
        self._last = {k: c() for k, c in self.clocks.items()}
        self._last_wall = time.perf_counter()


def _outcome(build, run) -> tuple[str, list[float], str | None]:
    """(status, timings, error) of one candidate, in the dataset's terms."""
    if build.error_msg is not None:  # build_error even for a build timeout: a resume must tell them apart
        return "build_error", [], str(build.error_msg)[:2000]
    if run.error_msg is not None or not run.run_secs:
        message = str(run.error_msg or "no timings")
        return ("timeout" if message.startswith("timeout") else "run_error"), [], message[:2000]
    return "ok", [float(s) for s in run.run_secs], None


def run_complete(folder: str, budget: int) -> dict | None:
    """The run's summary if it finished with this budget (or more), else None."""
    summary = read_run(folder)
    return summary if summary and summary.get("budget_per_task", 0) >= budget else None


def tune_run(group: TuneGroup, contender: Contender, seed: int, config: TuneConfig, out_dir: str, builder, runner,
             hardware: HardwareDescriptor, target, progress: Callable[[int], None] = lambda n: None) -> dict:
    """Tune `group` with `contender` for `config.budget` measurements per task (resuming its log);
    returns the run's summary (also written to its run.json)."""
    from tvm.s_tir import meta_schedule as ms

    from cwm_bench.rows.records import provenance, workload_row

    folder = RunKey(group.name, contender.label, seed).folder(out_dir)
    run_config = _run_config(group, contender, config, hardware)
    check_config(folder, run_config)
    done = run_complete(folder, config.budget)
    if done:
        return done
    target_json = str(target)
    cores = config.num_cores or hardware.num_cores
    log = RunLog(folder, provenance(hardware, target_json, config.protocol.to_json()))
    try:
        log.write_config(run_config)
        # TVM's XGBModel scores at random (numpy's global generator) until it has 100 measurements
        np.random.seed(seed)
        log.add_workloads([{**workload_row(w), "workload_id": w.workload_id} for w in group.workloads])
        previous = log.trials()
        with tempfile.TemporaryDirectory(prefix="cwm-bench-tune-") as work_dir:
            tasks = _contexts(group, target, cores, seed + 7919 * previous.num_rows, work_dir)
            model = _TimedCostModelClass()(contender.cost_model(seed, {w.workload_id: w for w in group.workloads},
                                                                 hardware, cores))
            database = ms.database.MemoryDatabase(module_equality="structural")
            _replay(log, previous, group, tasks, database, model, target)
            total = config.budget * len(group.workloads)
            remaining = total - previous.num_rows
            state = _RunState(log, group, contender, seed, hardware, target_json, config.protocol.to_json(),
                              {"model": lambda: model.seconds, "build": lambda: builder.seconds,
                               "measure": lambda: runner.seconds},
                              previous.num_rows, _next_batch(previous), progress)
            started = time.time()
            if remaining > 0:
                callbacks = [*ms.measure_callback.MeasureCallback.create("default"), _LoggerClass()(state)]
                ms.tune_tasks(tasks=tasks, task_weights=group.weights, work_dir=work_dir, max_trials_global=remaining,
                              max_trials_per_task=remaining,
                              num_trials_per_iter=config.per_iter, builder=builder, runner=runner,
                              database=database, cost_model=model, measure_callbacks=callbacks)
        trials = log.trials()
        summary = _summary(group, contender, seed, config, hardware, trials, previous.num_rows,
                           time.time() - started)
        log.finish(summary)
        return summary
    finally:
        log.close()


def _TimedCostModelClass():
    return _ms_classes()[0]


def _LoggerClass():
    return _ms_classes()[1]


def _run_config(group: TuneGroup, contender: Contender, config: TuneConfig, hardware: HardwareDescriptor) -> dict:
    """What makes a run the same run when it is resumed (written to run-config.json at its start)."""
    return {"contender": contender.describe(), "per_iter": config.per_iter, "hw_id": hardware.hw_id,
            "protocol": json.loads(config.protocol.to_json()), "tasks": [w.workload_id for w in group.workloads]}


def _contexts(group: TuneGroup, target, cores: int, seed: int, work_dir: str) -> list:
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.logging import get_loggers_from_work_dir
    from tvm.s_tir.meta_schedule.utils import fork_seed

    names = [w.task_name for w in group.workloads]
    loggers = get_loggers_from_work_dir(work_dir, names)
    # MetaSchedule's logs stay in work_dir; the console gets its warnings only (the progress bar is ours)
    for logger in (*loggers, logging.getLogger("tvm.s_tir.meta_schedule")):
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)
    return [ms.TuneContext(mod=w.mod, target=target, space_generator="post-order-apply",
                           search_strategy=ms.search_strategy.EvolutionarySearch(), task_name=w.task_name,
                           rand_state=rand_state, num_threads=cores, logger=logger).clone()
            for w, logger, rand_state in zip(group.workloads, loggers,
                                              fork_seed(seed, n=len(group.workloads)), strict=True)]


def _replay(log: RunLog, previous, group: TuneGroup, tasks: list, database, model, target) -> None:
    """A resumed run: its measured trials go into the search's database and to the cost model,
    in their original batches, as if the search had measured them in this process."""
    if not previous.num_rows:
        return
    import pyarrow.compute as pc
    from tvm.s_tir import Schedule, Trace
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    records = log.store.read("records", ["record_id", "trace_json", "latencies_s", "program_hash"])
    columns = (records.column(c).to_pylist() for c in records.column_names)
    by_id = {rid: (trace, lat) for rid, trace, lat, _ in zip(*columns, strict=True)}
    model.measured.update(records.column("program_hash").to_pylist())
    index = {w.workload_id: i for i, w in enumerate(group.workloads)}
    for batch in sorted(set(previous.column("batch").to_pylist())):
        rows = previous.filter(pc.equal(previous["batch"], batch)).to_pylist()
        task = index[rows[0]["workload_id"]]
        w, ctx = group.workloads[task], tasks[task]
        workload = database.commit_workload(w.mod)
        args = ArgInfo.from_prim_func(w.mod["main"])
        candidates, results = [], []
        for row in rows:
            trace_json, latencies = by_id[row["record_id"]]
            sch = Schedule(w.mod)
            Trace.apply_json_to_schedule(json.loads(trace_json), sch)
            ok = row["status"] == "ok"
            # as TVM's AddToDatabase commits a failure: run_secs 1e10
            database.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, latencies if ok else [1e10],
                                                                   target, args))
            if row["status"] != "build_error":  # TVM's UpdateCostModel skips failed builds
                candidates.append(ms.search_strategy.MeasureCandidate(sch, args))
                results.append(ms.runner.RunnerResult(latencies if ok else None, None if ok else row["status"]))
        if candidates:
            model.update(ctx, candidates, results)


def _next_batch(previous) -> int:
    return int(max(previous.column("batch").to_pylist())) + 1 if previous.num_rows else 0


def _summary(group: TuneGroup, contender: Contender, seed: int, config: TuneConfig, hardware: HardwareDescriptor,
             trials, resumed_from: int, wall_s: float) -> dict:
    rows = trials.to_pylist()
    best: dict[str, float] = {}
    for r in rows:
        if r["status"] == "ok":
            best[r["workload_id"]] = min(best.get(r["workload_id"], np.inf), r["latency_s"])
    spent = {k: float(sum(r[k] or 0.0 for r in rows)) for k in ("model_s", "search_s", "build_s", "measure_s", "log_s")}
    return {
        "group": group.name, "label": contender.label, "contender": contender.describe(), "seed": seed,
        "budget_per_task": config.budget, "per_iter": config.per_iter, "trials": len(rows),
        "ok_trials": sum(r["status"] == "ok" for r in rows),
        "repeated_programs": len(rows) - len({r["record_id"] for r in rows}),
        "tasks": [{"workload_id": w.workload_id, "task_name": w.task_name, "weight": weight,
                   "best_latency_s": best.get(w.workload_id), "seen_in_training": contender.seen(w.workload_id),
                   "trials": sum(r["workload_id"] == w.workload_id for r in rows)}
                  for w, weight in zip(group.workloads, group.weights, strict=True)],
        "tuned_on": {"hw_id": hardware.hw_id, "hw_name": hardware.name, "hw_arch": hardware.arch,
                     "num_cores": hardware.num_cores},
        "seconds": spent, "resumed_from_trial": resumed_from, "wall_s_this_process": wall_s,
        "protocol": json.loads(config.protocol.to_json()), "search": "EvolutionarySearch() (TVM defaults)",
        "finished_at": dt.datetime.now(dt.UTC).isoformat(), "pid": os.getpid(),
    }


def tune_all(groups: list[TuneGroup], contenders: list[Contender], seeds: list[int], config: TuneConfig,
             out_dir: str, hardware: HardwareDescriptor | None = None, progress: bool = True,
             echo: Callable[[str], None] = print) -> list[dict]:
    """Every (seed, group, contender) run, seed-major so a stopped session leaves whole seeds behind;
    finished runs are skipped, unfinished ones resumed. One builder and one runner serve all runs."""
    from tqdm import tqdm

    from cwm_bench.hardware import detect_cpu, target_for
    from cwm_bench.model.metaschedule import InProcessBuilder, IsolatedRunner
    from cwm_bench.tvm_env import load_tensor_intrinsics

    load_tensor_intrinsics("llvm")
    hardware = hardware or detect_cpu(config.num_cores)
    target = target_for(hardware)
    plan = [(seed, group, contender) for seed in seeds for group in groups for contender in contenders]
    total = sum(config.budget * len(g.workloads) for _, g, _ in plan)
    summaries = []
    bar = tqdm(total=total, unit="trial", desc="tune", disable=not progress, dynamic_ncols=True)
    say = (lambda line: bar.write(line, file=sys.stderr)) if progress else echo
    planned = 0
    with InProcessBuilder(num_workers=config.num_cores) as builder, \
            IsolatedRunner(protocol=config.protocol, num_threads=hardware.num_cores) as runner:
        for seed, group, contender in plan:
            planned += config.budget * len(group.workloads)
            folder = RunKey(group.name, contender.label, seed).folder(out_dir)
            check_config(folder, _run_config(group, contender, config, hardware))  # a finished run too
            summary = run_complete(folder, config.budget)
            if summary is None:
                bar.set_postfix_str(f"{group.name[:28]} {contender.label} seed {seed}")
                summary = tune_run(group, contender, seed, config, out_dir, builder, runner, hardware, target,
                                   progress=bar.update)
                best = [t["best_latency_s"] for t in summary["tasks"] if t["best_latency_s"]]
                say(f"{group.name} {contender.label} seed {seed}: {summary['trials']} trials, best "
                    + (", ".join(f"{b * 1e6:.1f} us" for b in best) if best else "none")
                    + f" ({summary['wall_s_this_process']:.0f} s)")
            bar.update(planned - bar.n)  # resumed or skipped trials, and searches that ran out early
            summaries.append(summary)
    bar.close()
    return summaries
