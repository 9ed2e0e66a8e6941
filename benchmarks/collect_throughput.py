"""Collector throughput and measurement noise, measured side by side in one run.

    .venv/bin/python benchmarks/collect_throughput.py [--per-task 32] [--stock-budget-s 420]

1. Valid measured records per hour: our collector vs the stock `ms.tune_tir` path (LocalBuilder +
   LocalRunner, its defaults), on the same tasks, in this process's lifetime.
2. Our overhead: collector wall time / time kernels spent inside the kept timings.
3. Noise: a sample of our candidates is re-measured in two fresh processes per protocol (ours, and
   MetaSchedule's default evaluator: number=3, repeat=1, min_repeat_ms=100, no warm-up beyond
   time_evaluator's own), interleaved in time; printed is the pairwise ordering agreement between
   the two runs of each protocol, over pairs of programs of the same task.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

STOCK_SCRIPT = """
import json, sys, time
import tvm
from tvm.s_tir import meta_schedule as ms
mod = tvm.ir.load_json(open(sys.argv[1]).read())
target = tvm.target.Target(json.loads(sys.argv[2]))
ms.tune_tir(mod, target, work_dir=sys.argv[3], max_trials_global=int(sys.argv[4]), num_trials_per_iter=16)
"""


def run_stock(workloads, target_json: str, trials: int, budget_s: float, work: str) -> tuple[int, float]:
    """Run ms.tune_tir per task within a shared wall-clock budget; count valid records it stored."""
    import tvm

    valid, started = 0, time.perf_counter()
    for w in workloads:
        left = budget_s - (time.perf_counter() - started)
        if left <= 0:
            break
        task_dir = os.path.join(work, f"stock-{w.workload_id}")
        os.makedirs(task_dir)
        mod_path = os.path.join(task_dir, "mod.json")
        with open(mod_path, "w") as handle:
            handle.write(tvm.ir.save_json(w.mod))
        # Own process group: tune_tir's popen workers must die with it, or they keep loading the CPU.
        proc = subprocess.Popen([sys.executable, "-c", STOCK_SCRIPT, mod_path, target_json, task_dir, str(trials)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            pass
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        valid += count_valid_ms_records(task_dir)
    return valid, time.perf_counter() - started


def count_valid_ms_records(work_dir: str) -> int:
    path = os.path.join(work_dir, "database_tuning_record.json")
    if not os.path.exists(path):
        return 0
    count = 0
    with open(path) as handle:
        for line in handle:
            secs = json.loads(line)[1][1]
            count += bool(secs) and all(0 < float(s) < 1e9 for s in secs)
    return count


def pairwise_agreement(a: dict[str, float], b: dict[str, float], task_of: dict[str, str]) -> float:
    same = total = 0
    for x, y in itertools.combinations(sorted(set(a) & set(b)), 2):
        if task_of[x] != task_of[y] or a[x] == a[y] or b[x] == b[y]:
            continue
        total += 1
        same += (a[x] < a[y]) == (b[x] < b[y])
    return same / total if total else float("nan")


def remeasure(items, protocol) -> dict[str, float]:
    from cwm_bench.measure.protocol import summarize
    from cwm_bench.measure.runner import Runner

    runner = Runner(protocol)  # a fresh worker process
    try:
        return {r.key: summarize(r.latencies_s) for r in runner.measure(items) if r.status == "ok"}
    finally:
        runner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="mini:conv2d_14x32x32_k3,depthwise_28x32_k3,softmax_64x128")
    parser.add_argument("--per-task", type=int, default=32)
    parser.add_argument("--stock-budget-s", type=float, default=420)
    parser.add_argument("--noise-sample", type=int, default=16, help="candidates per task re-measured")
    args = parser.parse_args()

    from cwm_bench.build.builder import ParallelBuilder
    from cwm_bench.collect import CollectConfig, Collector
    from cwm_bench.hardware import detect_cpu, target_for
    from cwm_bench.measure.protocol import MeasureProtocol
    from cwm_bench.measure.runner import MeasureItem
    from cwm_bench.rows.store import DatasetStore
    from cwm_bench.workload.suites import select_workloads

    workloads = select_workloads(args.workloads)
    hardware = detect_cpu()
    target_json = str(target_for(hardware))
    work = tempfile.mkdtemp(prefix="cwm-bench-bench-")
    print(f"hardware: {hardware.name} ({hardware.arch}, {hardware.num_cores} cores); "
          f"tasks: {', '.join(w.task_name for w in workloads)}")

    # 1. ours
    config = CollectConfig(per_task=args.per_task)
    collector = Collector(hardware, os.path.join(work, "ours"), config, log=lambda s: None)
    started = time.perf_counter()
    summaries = collector.run(workloads)
    ours_wall = time.perf_counter() - started
    ours_ok = sum(s.counts.get("ok", 0) for s in summaries)
    stages = dict(collector.stage_seconds)
    table = DatasetStore(os.path.join(work, "ours"), readonly=True).read("records")
    floor = config.protocol.min_repeat_ms / 1000
    busy = sum(max(x, floor) for lats in table.column("latencies_s").to_pylist() for x in lats)

    # 2. stock MetaSchedule path
    stock_ok, stock_wall = run_stock(workloads, target_json, args.per_task, args.stock_budget_s, work)

    ours_rate, stock_rate = ours_ok / ours_wall * 3600, stock_ok / stock_wall * 3600
    print(f"\nours : {ours_ok} ok records in {ours_wall:.0f} s = {ours_rate:.0f} records/hour "
          f"(stages: " + ", ".join(f"{k} {v:.0f}s" for k, v in stages.items() if k != "kernel") + ")")
    print(f"stock: {stock_ok} ok records in {stock_wall:.0f} s = {stock_rate:.0f} records/hour "
          f"(ms.tune_tir, LocalBuilder + LocalRunner defaults)")
    if stock_ok:
        print(f"throughput ratio ours/stock: {ours_rate / stock_rate:.1f}x")
    else:  # a lower bound: as if the stock path had stored one record just as its budget ran out
        print(f"throughput ratio ours/stock: > {ours_rate / (3600 / stock_wall):.0f}x "
              f"(stock stored no valid record in {stock_wall:.0f} s)")
    print(f"overhead: wall / kernel time in kept timings = {ours_wall / busy:.2f}x "
          f"(kernel time counts each timing as max(latency, min_repeat_ms))")

    # 3. noise: same built programs, two fresh processes per protocol, interleaved in time
    rng = np.random.default_rng(0)
    rows = [r for r in table.select(["workload_id", "program_hash", "trace_json", "status"]).to_pylist()
            if r["status"] == "ok"]
    by_task: dict[str, list[dict]] = {}
    for r in rows:
        by_task.setdefault(r["workload_id"], []).append(r)
    sample = [r for task_rows in by_task.values()
              for r in rng.permutation(task_rows)[: args.noise_sample]]  # type: ignore[arg-type]
    from cwm_bench.candidates.actions import replay_trace

    mods = {w.workload_id: w for w in workloads}
    builder = ParallelBuilder(target_json, artifact_dir=os.path.join(work, "libs"))
    os.makedirs(builder.artifact_dir, exist_ok=True)
    built = builder.build([(r["program_hash"], replay_trace(r["trace_json"], mods[r["workload_id"]].mod).mod)
                           for r in sample])
    builder.pool.close()
    items = [MeasureItem(b.key, b.lib_path, r["workload_id"],
                         [(list(a.shape), a.dtype) for a in mods[r["workload_id"]].args])
             for r, b in zip(sample, built, strict=True) if b.status == "ok"]
    task_of = {it.key: it.workload_id for it in items}
    ours_protocol = config.protocol
    stock_protocol = MeasureProtocol(warmup_runs=0, rounds=1, repeats_per_round=1, min_repeat_ms=100, number=3,
                                     calibrate=False)
    a1 = remeasure(items, ours_protocol)
    b1 = remeasure(items, stock_protocol)
    a2 = remeasure(items, ours_protocol)
    b2 = remeasure(items, stock_protocol)
    print(f"\nnoise ({len(items)} programs over {len(by_task)} tasks, two fresh processes per protocol):")
    print(f"  pairwise ordering agreement, our protocol       : {pairwise_agreement(a1, a2, task_of):.3f}")
    print(f"  pairwise ordering agreement, MetaSchedule default: {pairwise_agreement(b1, b2, task_of):.3f}")
    print(f"\nour protocol: {ours_protocol.to_json()}")


if __name__ == "__main__":
    main()
