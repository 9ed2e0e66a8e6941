"""Collector throughput, overhead and measurement noise, measured side by side in one run.

    .venv/bin/python benchmarks/collect_throughput.py [--per-task 72] [--stock-budget-s 900]    # ~25 min

1. Valid measured records per hour on the same tasks: our collector pipelined (measuring on its own
   core(s) while the next batch is searched and built on the others), our collector serial (builds
   between measurements, measuring on every core), and the stock `ms.tune_tir` path (LocalBuilder +
   LocalRunner defaults) with the same time on each task. A ratio against the stock path is printed
   only when it stored at least 16 valid records.
2. Overhead of each of our runs: wall time / time kernels spent inside the kept timings.
3. Noise with the pipeline on: every ok program of the pipelined run is re-timed in four fresh
   measuring workers pinned to the measuring cores, interleaved: quiet, beside builds, quiet, beside
   builds (`cwm_bench.measure.overlap_check`); printed are the two-run ordering agreements each way
   with 95% bootstrap intervals, and the verdict is saved for `collect --overlap auto`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

STOCK_SCRIPT = """
import json, sys, time
import tvm
from tvm.s_tir import meta_schedule as ms
mod = tvm.ir.load_json(open(sys.argv[1]).read())
target = tvm.target.Target(json.loads(sys.argv[2]))
ms.tune_tir(mod, target, work_dir=sys.argv[3], max_trials_global=int(sys.argv[4]), num_trials_per_iter=16)
"""
MIN_STOCK_RECORDS = 16  # below this, a ratio against the stock path says more about luck than speed


def run_stock(workloads, target_json: str, trials: int, budget_s: float, work: str) -> tuple[int, float]:
    """Run ms.tune_tir on each task for at most budget_s / tasks; count the valid records it stored."""
    import tvm

    valid, started = 0, time.perf_counter()
    for w in workloads:
        task_dir = os.path.join(work, f"stock-{w.workload_id}")
        os.makedirs(task_dir)
        mod_path = os.path.join(task_dir, "mod.json")
        with open(mod_path, "w") as handle:
            handle.write(tvm.ir.save_json(w.mod))
        # Own process group: tune_tir's popen workers must die with it, or they keep loading the CPU.
        proc = subprocess.Popen([sys.executable, "-c", STOCK_SCRIPT, mod_path, target_json, task_dir, str(trials)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=budget_s / len(workloads))
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


def run_ours(label: str, workloads, hardware, config, work: str) -> dict:
    from cwm_bench.collect import Collector
    from cwm_bench.rows.store import DatasetStore

    out = os.path.join(work, label)
    collector = Collector(hardware, out, config, log=lambda s: None)
    started = time.perf_counter()
    summaries = collector.run(workloads)
    wall = time.perf_counter() - started
    table = DatasetStore(out, readonly=True).read("records")
    floor = config.protocol.min_repeat_ms / 1000
    busy = sum(max(x, floor) for lats in table.column("latencies_s").to_pylist() for x in lats)
    ok = sum(s.counts.get("ok", 0) for s in summaries)
    return {"label": label, "out": out, "ok": ok, "wall": wall, "rate": ok / wall * 3600, "busy": busy,
            "stages": dict(collector.stage_seconds), "batches": dict(collector.batches),
            "cores": hardware.num_cores}


def serial_noise(programs, hardware) -> tuple[float, list[float]]:
    """The same programs built for every core and timed twice, in fresh workers, nothing beside them."""
    from cwm_bench.build.builder import ParallelBuilder
    from cwm_bench.hardware import target_for
    from cwm_bench.measure.overlap_check import agreement_with_interval, built_items, timed_run
    from cwm_bench.measure.protocol import MeasureProtocol

    builder = ParallelBuilder(str(target_for(hardware)))
    try:
        items = built_items(builder, programs)
        builder.pool.close()
        runs = [timed_run(items, MeasureProtocol(), seed) for seed in (0, 1)]
    finally:
        builder.close()
    return agreement_with_interval(*runs, {it.key: it.workload_id for it in items})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="mini:conv2d_14x32x32_k3,depthwise_28x32_k3,softmax_64x128")
    parser.add_argument("--per-task", type=int, default=72, help="records per task for our runs (and the "
                        "stock run's trial budget); 72 x 3 tasks gives the noise check >= 200 programs")
    parser.add_argument("--stock-budget-s", type=float, default=900, help="wall time of the stock run, split "
                        "evenly over the tasks (its first batch alone can take 100 s on 2 cores)")
    parser.add_argument("--measure-cores", default=None, help="as for `cwm-bench collect` (default: half)")
    args = parser.parse_args()

    import platform
    import subprocess as sp

    from cwm_bench.collect import CollectConfig
    from cwm_bench.hardware import detect_cpu, target_for
    from cwm_bench.measure.cores import default_measure_cores, parse_measure_cores, plan_cores
    from cwm_bench.measure.overlap_check import check_overlap, dataset_programs, save_verdict
    from cwm_bench.workload.suites import select_workloads

    workloads = select_workloads(args.workloads)
    full = detect_cpu()
    plan = plan_cores(parse_measure_cores(args.measure_cores) if args.measure_cores else default_measure_cores())
    pinned = detect_cpu(len(plan.measure))
    commit = sp.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="cwm-bench-bench-")
    print(f"machine: {full.name} ({full.arch}, {full.num_cores} cores), {platform.platform()}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}")
    print(f"tasks: {', '.join(w.task_name for w in workloads)}; {args.per_task} records each; {plan.text}")

    pipelined = run_ours("pipelined", workloads, pinned,
                         CollectConfig(per_task=args.per_task, measure_cores=plan.measure, overlap=True), work)
    serial = run_ours("serial", workloads, full, CollectConfig(per_task=args.per_task), work)
    stock_ok, stock_wall = run_stock(workloads, str(target_for(full)), args.per_task, args.stock_budget_s, work)
    stock_rate = stock_ok / stock_wall * 3600

    print()
    for r in (pipelined, serial):
        stages = ", ".join(f"{k} {v:.0f}s" for k, v in r["stages"].items() if k not in ("kernel", "write"))
        print(f"ours, {r['label']:<9}: {r['ok']} ok records in {r['wall']:.0f} s = {r['rate']:.0f} records/hour "
              f"(kernels on {r['cores']} core(s); stage wall times {stages}; batches {r['batches']})")
    print(f"stock          : {stock_ok} ok records in {stock_wall:.0f} s (budget {args.stock_budget_s:.0f} s, "
          f"{args.per_task} trials per task) = {stock_rate:.0f} records/hour "
          f"(ms.tune_tir, LocalBuilder + LocalRunner defaults, kernels on {full.num_cores} cores)")
    for r in (pipelined, serial):
        if stock_ok >= MIN_STOCK_RECORDS:
            print(f"throughput ratio ours {r['label']}/stock: {r['rate'] / stock_rate:.1f}x")
        else:
            print(f"throughput ratio ours {r['label']}/stock: stock stored {stock_ok}; no ratio")
    print(f"pipelined / serial: {pipelined['rate'] / serial['rate']:.2f}x")
    for r in (pipelined, serial):
        print(f"overhead, {r['label']}: wall / kernel time in kept timings = {r['wall'] / r['busy']:.2f}x "
              f"(kernel time counts each timing as max(latency, min_repeat_ms))")

    programs = dataset_programs(pipelined["out"], workloads, args.per_task)
    verdict = check_overlap(pinned, plan, str(target_for(pinned)), programs, log=lambda s: None)
    print("\nnoise with the pipeline on, " + "\n".join(verdict.lines()))
    print(f"verdict saved for `collect --overlap auto`: {save_verdict(verdict, pinned, plan)}")
    serial_value, (low, high) = serial_noise(programs, full)
    print(f"  pairwise ordering agreement, serial default (kernels on {full.num_cores} cores, builds between): "
          f"{serial_value:.3f} [{low:.3f}, {high:.3f}]")
    print(f"\nour protocol: {CollectConfig().protocol.to_json()}")


if __name__ == "__main__":
    main()
