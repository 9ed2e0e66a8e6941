"""`cwm-bench e2e`: a whole network compiled with Relax and the best tuned schedules, timed in one
run against PyTorch eager and `torch.compile` on the same CPU, thread count and inputs.

The schedules come from tuning logs (`cwm-bench tune --out` folders): for every task of the network,
the fastest ok record of the chosen runs goes into a MetaSchedule database, which
`ms.relax_integration.compile_relax` applies; tasks without a record keep TVM's default (untuned,
unparallelised) code and are listed. Timings alternate between the contestants round by round, so a
slow spell of the machine hits all of them; each figure is the median over rounds.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

COOL_DOWN_S = 0.5


class E2EError(ValueError):
    """Bad input for e2e (one line)."""


@dataclass
class E2EResult:
    network: str
    threads: int
    tvm_ms: float
    torch_ms: dict[str, float | None]  # "eager", "compile" -> median ms (None: did not run)
    torch_notes: dict[str, str]
    max_abs_error: float
    tuned: list[str]  # task names with a tuned schedule
    fallback: list[str]  # task names compiled without one
    rounds: int
    labels: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.network}: {self.threads} thread(s), median of {self.rounds} interleaved rounds",
               f"  TVM (tuned, {len(self.tuned)}/{len(self.tuned) + len(self.fallback)} tasks): {self.tvm_ms:.3f} ms"]
        for name, ms in self.torch_ms.items():
            if ms is None:
                out.append(f"  PyTorch {name}: not run ({self.torch_notes.get(name, '')})")
            else:
                out.append(f"  PyTorch {name}: {ms:.3f} ms -> TVM speedup {ms / self.tvm_ms:.2f}x")
        out.append(f"  outputs: max abs error {self.max_abs_error:.3g} (TVM vs PyTorch eager)")
        if self.fallback:
            out.append(f"  untuned (default schedules): {', '.join(self.fallback)}")
        return out


def best_records(tuned_dirs: list[str], labels: list[str] | None,
                 hw_id: str | None = None) -> tuple[dict[str, tuple[str, float]], list[str]]:
    """workload_id -> (trace JSON, latency) of the fastest ok record in the runs (of `labels`, if
    given; measured on `hw_id`, if given: latencies of other machines do not rank schedules here)."""
    import pyarrow.compute as pc

    from cwm_bench.rows.reader import read_table
    from cwm_bench.tuning.run_log import read_run, run_folders

    best: dict[str, tuple[str, float]] = {}
    seen_labels = set()
    folders = [f for d in tuned_dirs for f in run_folders(d)]
    if not folders:
        raise E2EError(f"no tuning runs under {', '.join(tuned_dirs)}")
    for folder in folders:
        summary = read_run(folder) or {}
        label = summary.get("label") or os.path.basename(os.path.dirname(folder))
        if labels and label not in labels:
            continue
        seen_labels.add(label)
        if not os.path.isdir(os.path.join(folder, "records")):
            raise E2EError(f"{folder}: no records (a copy of the trials only?); e2e needs the run's dataset folder")
        records = read_table(folder, "records", ["workload_id", "trace_json", "latency_s", "status", "hw_id"])
        records = records.filter(pc.equal(records["status"], "ok"))
        if hw_id is not None:
            records = records.filter(pc.equal(records["hw_id"], hw_id))
        for wid, trace, latency in zip(*(records.column(c).to_pylist() for c in ("workload_id", "trace_json",
                                                                                 "latency_s")), strict=True):
            if wid not in best or latency < best[wid][1]:
                best[wid] = (trace, latency)
    if labels and not seen_labels:
        raise E2EError(f"no runs of {', '.join(labels)} under {', '.join(tuned_dirs)}")
    return best, sorted(seen_labels)


def _database(network: str, best: dict, target):
    """A MetaSchedule database with the best schedule of every task of `network` found in `best`."""
    import json

    from tvm.s_tir import Schedule, Trace
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from cwm_bench.tvm_env import structural_hash_hex
    from cwm_bench.workload.relax_import import network_tasks
    from cwm_bench.workload.workload import normalize_mod

    database = ms.database.MemoryDatabase(module_equality="structural")
    tuned, fallback = [], []
    for task in network_tasks(network, "llvm"):
        entry = best.get(structural_hash_hex(normalize_mod(task.mod)))  # the id tuning rows carry
        if entry is None:
            fallback.append(task.task_name)
            continue
        # committed as extraction left it: the form Relax's MetaScheduleApplyDatabase queries
        mod = task.mod
        sch = Schedule(mod)
        Trace.apply_json_to_schedule(json.loads(entry[0]), sch)
        workload = database.commit_workload(mod)
        database.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, [entry[1]], target,
                                                               ArgInfo.from_prim_func(mod["main"])))
        tuned.append(task.task_name)
    return database, tuned, fallback


def _compile(mod, database, target):
    """Build the fused module with the database's schedules: (executable, tuned names, untuned names).

    `ms.relax_integration.compile_relax` runs LegalizeOps/FuseOps/FuseTIR again first; on a module
    that is already fused (ours: the form tasks were extracted from) that re-fuses functions, and
    8 of BERT's 11 then matched no record. So the database is applied to the module as extracted,
    and only the lowering passes follow. Which functions were scheduled is read from the result."""
    import tvm
    from tvm import relax
    from tvm.relax import pipeline

    with target, database, tvm.transform.PassContext(opt_level=3):
        applied = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        try:
            passes = pipeline.dataflow_lower_passes(target) + pipeline.finalize_passes(target)
        except (ValueError, AttributeError):  # CPU targets without a registered pipeline (llvm here)
            passes = [relax.transform.RewriteDataflowReshape(), relax.transform.ToNonDataflow(),
                      relax.transform.RemovePurityChecking(), relax.transform.CallTIRRewrite(),
                      relax.transform.StaticPlanBlockMemory(), relax.transform.LowerAllocTensor(),
                      relax.transform.KillAfterLastUse(), relax.transform.LowerRuntimeBuiltin(),
                      relax.transform.ComputePrimValue(), relax.transform.VMShapeLower(),
                      relax.transform.AttachGlobalSymbol()]
        lowering = tvm.transform.Sequential(passes)

        @tvm.transform.module_pass(opt_level=3)
        def lower(module, _ctx):
            return lowering(module)

        executable = relax.build(applied, target=target, relax_pipeline=lower)
    names = {gv.name_hint: f for gv, f in applied.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    tuned = sorted(n for n, f in names.items() if f.attrs and f.attrs.get("tirx.is_scheduled", False))
    return executable, tuned, sorted(set(names) - set(tuned))


def run_e2e(network: str, tuned_dirs: list[str], labels: list[str] | None = None, threads: int | None = None,
            rounds: int = 15, torch_compile: bool = True, log=print) -> E2EResult:
    """Compile `network` with the tuned schedules and time it against PyTorch (see the module doc)."""
    import torch
    import tvm
    from tvm import relax

    from cwm_bench.hardware import detect_cpu, target_for
    from cwm_bench.tvm_env import load_tensor_intrinsics
    from cwm_bench.workload.networks import NETWORKS
    from cwm_bench.workload.relax_import import relax_module

    if network not in NETWORKS:
        raise E2EError(f"unknown network {network!r}; known: {', '.join(NETWORKS)}")
    hardware = detect_cpu(threads)
    threads = hardware.num_cores
    load_tensor_intrinsics("llvm")
    target = target_for(hardware)
    best, labels_used = best_records(tuned_dirs, labels, detect_cpu().hw_id)  # as `tune` records it
    database, tuned, fallback = _database(network, best, target)
    log(f"{network}: {len(tuned)} tuned task(s), {len(fallback)} without a tuned schedule; compiling")
    executable, tuned, fallback = _compile(relax_module(network, "llvm"), database, target)
    device = tvm.cpu()
    vm = relax.VirtualMachine(executable, device)
    spec = NETWORKS[network]
    inputs = spec.example_inputs()
    tvm_inputs = [tvm.runtime.tensor(x.numpy(), device) for x in inputs]
    torch.set_num_threads(threads)
    model = spec.build()
    with torch.no_grad():
        expected = model(*inputs)
    got = vm["main"](*tvm_inputs)
    got = got if hasattr(got, "numpy") else got[0]  # a tensor, or a tuple holding one
    error = float(np.max(np.abs(got.numpy() - expected.numpy())))
    contestants = {"tvm": _tvm_timer(vm, tvm_inputs), "eager": _torch_timer(model, inputs)}
    notes: dict[str, str] = {}
    if torch_compile:
        try:
            compiled = torch.compile(model)
            with torch.no_grad():
                compiled(*inputs)  # compiles (inductor, offline)
            contestants["compile"] = _torch_timer(compiled, inputs)
        except Exception as exc:  # noqa: BLE001  (no compiler, no triton...: reported, not fatal)
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            notes["compile"] = f"{type(exc).__name__}: {first}"
    else:
        notes["compile"] = "--no-torch-compile"
    timings: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(rounds):
        for name, timer in contestants.items():
            # a precaution: OpenMP worker threads (PyTorch's) may spin for a while after a parallel
            # call, and on few cores they would take the next contestant's cores
            time.sleep(COOL_DOWN_S)
            timings[name].append(timer())
    median = {name: float(np.median(v)) for name, v in timings.items()}
    return E2EResult(network, threads, median["tvm"], {"eager": median["eager"], "compile": median.get("compile")},
                     notes, error, tuned, fallback, rounds, labels_used)


def _tvm_timer(vm, inputs, min_ms: float = 200.0):
    """One timing: mean ms per call over enough calls to last `min_ms` (calibrated once)."""
    evaluator = vm.time_evaluator("main", inputs[0].device, number=1, repeat=1, min_repeat_ms=int(min_ms))

    def timer() -> float:
        return 1000.0 * float(evaluator(*inputs).mean)

    time.sleep(COOL_DOWN_S)
    timer()  # warm-up
    return timer


def _torch_timer(model, inputs, min_ms: float = 200.0):
    import torch

    def once() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            model(*inputs)
        return time.perf_counter() - start

    for _ in range(3):
        once()
    calls = max(1, math.ceil(min_ms / 1000.0 / max(once(), 1e-6)))

    def timer() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(calls):
                model(*inputs)
        return 1000.0 * (time.perf_counter() - start) / calls

    return timer
