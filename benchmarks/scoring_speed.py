"""Candidates scored per second by every registered cost model, input preparation included.

    .venv/bin/python benchmarks/scoring_speed.py [--per-task 128] [--repeats 3]

The same real candidates (MetaSchedule random samples of a 64x64x64 matmul and a mini conv2d) are
scored by every model. Each model is first fit quickly on those candidates with random latencies:
the point is speed, not accuracy. Timed, median of `--repeats` runs over all candidates:

- input prep: what turning live schedules into the model's `Records` costs. Every model pays the
  structural hash (record ids) and the table; feature models add `PerStoreFeature().extract_from`,
  sequence models add trace -> JSON -> `actions_from_trace_json`.
- model: `model.score(records)` (its own tokenizing / stacking included).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

NEEDS = {"random": set(), "flops": {"features"}, "ansor-xgb": {"features"}, "ansor-xgb-rank": {"features"},
         "tenset-mlp": {"features"}, "tlp": {"actions"}}  # any other model: both inputs
QUICK_FIT = {"tenset-mlp": {"epochs": 3}, "tlp": {"epochs": 3}, "ansor-xgb": {"num_boost_round": 100},
             "ansor-xgb-rank": {"num_boost_round": 100}}
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
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and XGBoost threads. On a busy machine more threads than free cores make "
                             "OpenMP wait on descheduled threads (index_add_ ran ~500x slower with 2 threads "
                             "on 2 loaded cores); raise it on an idle one.")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from tvm.s_tir import meta_schedule as ms

    from cwm_bench.candidates.actions import actions_from_trace_json, trace_to_json
    from cwm_bench.candidates.generate import CandidateGenerator, SearchConfig
    from cwm_bench.hardware import detect_cpu, target_for
    from cwm_bench.model import Records, create_model, model_names
    from cwm_bench.rows.records import record_id
    from cwm_bench.tvm_env import load_tensor_intrinsics, structural_hash_hex
    from cwm_bench.workload.operators import MINI_OPERATORS, operator_workload

    load_tensor_intrinsics("llvm")
    hardware = detect_cpu()
    target = target_for(hardware)
    generators, candidates = [], []
    start = time.perf_counter()
    for spec in (s for s in MINI_OPERATORS if s.name in TASKS):
        # num_threads also sets the thread pool of TVM's feature extraction (TuneContext)
        gen = CandidateGenerator(operator_workload(spec), target, seed=0, config=SearchConfig(num_threads=args.threads))
        drawn = gen.random(args.per_task)
        generators.append(gen)
        candidates.append(drawn)
        print(f"{spec.name}: {len(drawn)} candidates")
    n = sum(len(c) for c in candidates)
    print(f"generated {n} candidates in {time.perf_counter() - start:.1f} s; "
          f"{hardware.name}, torch threads {torch.get_num_threads()}\n")

    def hashes() -> list[str]:
        return [record_id(g.workload.workload_id, structural_hash_hex(c.sch.mod))
                for g, cs in zip(generators, candidates, strict=True) for c in cs]

    def features() -> list[np.ndarray]:
        out = []
        for g, cs in zip(generators, candidates, strict=True):
            mcs = [ms.search_strategy.MeasureCandidate(c.sch, g.args_info) for c in cs]
            extracted = ms.feature_extractor.PerStoreFeature().extract_from(g.ctx, mcs)
            out += [f.numpy().astype(np.float32).reshape(-1, 164) for f in extracted]
        return out

    def actions() -> list[list[dict]]:
        return [actions_from_trace_json(trace_to_json(c.sch.trace)) for cs in candidates for c in cs]

    t_hash, ids = timed(hashes, args.repeats)
    t_feat, feats = timed(features, args.repeats)
    t_act, acts = timed(actions, args.repeats)
    tasks = [g.workload.workload_id for g, cs in zip(generators, candidates, strict=True) for _ in cs]
    workloads = pa.table({"workload_id": [g.workload.workload_id for g in generators],
                          "family": [g.workload.family for g in generators],
                          "flops": [g.workload.flops for g in generators]})
    empty: list[list] = [[] for _ in range(n)]

    def store_column() -> pa.Array:
        # Arrow arrays straight from numpy, as the MetaSchedule adapter builds them (no Python lists)
        offsets = np.concatenate([[0], np.cumsum([len(f) for f in feats])]).astype(np.int32)
        stores = pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate(feats).reshape(-1)), 164)
        return pa.ListArray.from_arrays(pa.array(offsets), stores)

    def table(with_features: bool, with_actions: bool) -> pa.Table:
        return pa.table({"record_id": ids, "workload_id": tasks, "trace_json": ["[]"] * n,
                         "actions": acts if with_actions else empty,
                         "features": store_column() if with_features else empty,
                         "hw_kind": [hardware.kind] * n, "hw_name": [hardware.name] * n,
                         "hw_arch": [hardware.arch] * n, "hw_num_cores": [hardware.num_cores] * n})

    print(f"input prep over {n} candidates: record ids (structural hash) {t_hash:.3f} s, "
          f"per-store features {t_feat:.3f} s, trace -> actions {t_act:.3f} s\n")
    rng = np.random.default_rng(0)
    latency = rng.lognormal(-9.0, 1.0, size=n)
    rows = []
    for name in model_names():
        needs = NEEDS.get(name, {"features", "actions"})
        t_table, tab = timed(lambda needs=needs: table("features" in needs, "actions" in needs), args.repeats)
        records = Records(tab, workloads)
        try:
            config = dict(QUICK_FIT.get(name, {}))
            if name.startswith("ansor-xgb"):
                config["nthread"] = args.threads
            model = create_model(name, **config)
            model.fit(Records(tab.append_column("latency_s", pa.array(latency)), workloads), progress=False)
        except Exception as exc:  # noqa: BLE001  (a model another engineer has not finished: noted, skipped)
            print(f"skipping {name}: {type(exc).__name__}: {exc}")
            continue
        prep = t_hash + t_table + (t_feat if "features" in needs else 0.0) + (t_act if "actions" in needs else 0.0)
        t_model, score = timed(lambda m=model, r=records: m.score(r), args.repeats)
        assert len(score) == n and np.isfinite(score).all(), name
        rows.append((name, prep, t_model, n / (prep + t_model), n / t_model))

    print(f"{'model':<16} {'input prep s':>12} {'model s':>9} {'cand/s total':>13} {'cand/s model':>13}")
    for name, prep, t_model, total, model_only in rows:
        print(f"{name:<16} {prep:>12.3f} {t_model:>9.3f} {total:>13.0f} {model_only:>13.0f}")


if __name__ == "__main__":
    main()
