"""Live scoring speed: MetaSchedule `MeasureCandidate`s to scores through the adapter, per model,
computing every input group (as before lazy inputs) and only the model's declared ones, in one run.

    .venv/bin/python benchmarks/scoring_speed.py [--per-task 128] [--repeats 3] [--threads 1] [--origin evolutionary]

The same real candidates (MetaSchedule samples of a 64x64x64 matmul and a mini conv2d: `random`, each
decision drawn anew, or `evolutionary`, the search's mutants of measured programs as the tuner scores
them; the default) are
scored by every registered model through `as_metaschedule_cost_model(...).predict(ctx, candidates)`,
the call MetaSchedule's evolutionary search makes. Each model is first fit quickly on those
candidates with random latencies: the point is speed, not accuracy. Timed, median of `--repeats`:

- per input group: building the sealed table with only that group (record_id = structural hash,
  trace, actions = trace -> JSON -> action structs, features = `PerStoreFeature().extract_from`,
  hardware = constant columns);
- per model: `predict` with every group computed ("all inputs") and with the model's declared groups
  ("declared"): input preparation and `model.score` together.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

QUICK_FIT = {"tenset-mlp": {"epochs": 3}, "tlp": {"epochs": 3}, "world-model": {"epochs": 3},
             "ansor-xgb": {"num_boost_round": 100}, "ansor-xgb-rank": {"num_boost_round": 100}}
TASKS = ("matmul_64x64x64", "conv2d_14x32x32_k3")


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of `repeats` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-task", type=int, default=128, help="Candidates per task (2 tasks).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--origin", choices=("random", "evolutionary"), default="evolutionary",
                        help="evolutionary: 64 random programs get random latencies, then the search proposes.")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch, XGBoost and TVM feature-extraction threads. On a busy machine more threads than "
                             "free cores make OpenMP wait on descheduled threads; raise it on an idle one.")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from tvm.s_tir import meta_schedule as ms

    from cwm_bench.candidates.generate import CandidateGenerator, SearchConfig
    from cwm_bench.hardware import detect_cpu, target_for
    from cwm_bench.model import ALL_INPUTS, INPUT_GROUPS, Records, create_model, model_names
    from cwm_bench.model.metaschedule import as_metaschedule_cost_model
    from cwm_bench.tvm_env import load_tensor_intrinsics
    from cwm_bench.workload.operators import MINI_OPERATORS, operator_workload

    load_tensor_intrinsics("llvm")
    hardware = detect_cpu()
    target = target_for(hardware)
    tasks = []
    start = time.perf_counter()
    for spec in (s for s in MINI_OPERATORS if s.name in TASKS):
        # num_threads also sets the thread pool of TVM's feature extraction (TuneContext)
        gen = CandidateGenerator(operator_workload(spec), target, seed=0, config=SearchConfig(num_threads=args.threads))
        if args.origin == "evolutionary":
            seeds = gen.random(64)
            gen.observe(seeds, np.random.default_rng(0).lognormal(-9.0, 1.0, size=len(seeds)).tolist())
            drawn = gen.evolutionary(args.per_task)
        else:
            drawn = gen.random(args.per_task)
        tasks.append((gen, [ms.search_strategy.MeasureCandidate(c.sch, gen.args_info) for c in drawn]))
        print(f"{spec.name}: {len(tasks[-1][1])} candidates")
    n = sum(len(c) for _, c in tasks)
    print(f"generated {n} {args.origin} candidates in {time.perf_counter() - start:.1f} s; {hardware.name} "
          f"({hardware.arch}), {args.threads} thread(s)\n")

    def tables(adapter) -> list[pa.Table]:
        return [adapter._table(gen.ctx, candidates) for gen, candidates in tasks]

    print("sealed-table cost per input group (workload_id only: the base):")
    for group in ["(base)", *INPUT_GROUPS]:
        adapter = as_metaschedule_cost_model(create_model("random"), inputs=[] if group == "(base)" else [group])
        tables(adapter)  # warm-up: the task's workload row and the hardware descriptor, once per adapter
        t, _ = timed(lambda a=adapter: tables(a), args.repeats)
        print(f"  {group:<10} {t:7.3f} s  {1e3 * t / n:7.3f} ms/candidate")
    print()

    every = as_metaschedule_cost_model(create_model("random"), inputs=ALL_INPUTS)
    full = pa.concat_tables(tables(every))
    workloads = every._workload_table()
    latency = np.random.default_rng(0).lognormal(-9.0, 1.0, size=n)
    labelled = Records(full.append_column("latency_s", pa.array(latency)), workloads)

    def time_predict(adapter) -> float:
        """Median seconds of one `predict` over every task's candidates (after a warm-up, as above)."""
        def predict() -> np.ndarray:
            return np.concatenate([adapter.predict(gen.ctx, candidates) for gen, candidates in tasks])

        predict()
        t, scores = timed(predict, args.repeats)
        assert len(scores) == n and np.isfinite(scores).all(), adapter
        return t

    rows = []
    for name in model_names():
        config = dict(QUICK_FIT.get(name, {}))
        if name.startswith("ansor-xgb"):
            config["nthread"] = args.threads
        try:
            model = create_model(name, **config)
            model.fit(labelled, progress=False)
        except Exception as exc:  # noqa: BLE001  (a model another engineer has not finished: noted, skipped)
            print(f"skipping {name}: {type(exc).__name__}: {exc}")
            continue
        timings = [time_predict(as_metaschedule_cost_model(model, inputs=inputs)) for inputs in (ALL_INPUTS, None)]
        rows.append((name, ",".join(sorted(model.inputs)), *timings))  # None above: the model's declared inputs
        if name == "world-model":  # the prefix-caching ablation (speed only): same weights, every row rolled
            model.config["prefix_cache"] = False
            rows.append(("  no prefix cache", ",".join(sorted(model.inputs)), float("nan"),
                         time_predict(as_metaschedule_cost_model(model))))

    base = next((t for name, _, _, t in rows if name == "ansor-xgb"), float("nan"))
    print(f"{'model':<16} {'declared inputs':<16} {'all inputs s':>12} {'declared s':>11} {'cand/s all':>11} "
          f"{'cand/s decl':>12} {'speed-up':>9} {'x ansor-xgb':>12}")
    for name, inputs, t_all, t_lazy in rows:
        print(f"{name:<16} {inputs:<16} {t_all:>12.3f} {t_lazy:>11.3f} {n / t_all:>11.0f} {n / t_lazy:>12.0f} "
              f"{t_all / t_lazy:>8.1f}x {base / t_lazy:>11.1f}x")


if __name__ == "__main__":
    main()
