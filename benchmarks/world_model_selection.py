"""Pick the world model's hyper-parameters on a validation carve-out of a split's *train* side.

    .venv/bin/python benchmarks/world_model_selection.py datasets/cwm-bench-cpu-v0 [--split by_network]

The test side is never read. The carve-out mimics the split: for `by_network` (whose test side holds
out whole networks) the validation tasks are the train-side tasks that occur only in the networks of
`--validation-networks` (default: ViT-B/16 block and MobileNetV2, the train side's transformer and its
other CNN); for other splits, a seeded quarter of the train tasks. Each configuration in GRID is fit
on the rest of the train side with one seed and scored by OPA over the validation tasks; the table
and the chosen configuration (highest OPA) are printed. The chosen options become `world-model`'s
defaults (reference_model/world_model.py), so `cwm-bench train --model world-model` uses them.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

GRID: dict[str, dict] = {  # options over world-model's defaults, spelled out so a re-run is the same grid
    "defaults (d64, consistency 0.1)": {"lr": 1e-3},
    "no consistency": {"lr": 1e-3, "consistency": 0.0},
    "consistency 0.5": {"lr": 1e-3, "consistency": 0.5},
    "d_model 128": {"lr": 1e-3, "d_model": 128},
    "lr 2e-3": {"lr": 2e-3},
}


def carve_out(side, split: str, networks: list[str], seed: int) -> np.ndarray:
    """A boolean mask over the side's records: True = validation."""
    tasks = side.task_ids
    if split == "by_network":
        held = set(networks)
        only_there = {w["workload_id"] for w in side.records.workloads.to_pylist()
                      if w["networks"] and {n["network"] for n in w["networks"]} <= held}
        return np.isin(tasks, list(only_there))
    unique = np.unique(tasks)
    picked = np.random.default_rng(seed).permutation(unique)[:max(1, len(unique) // 4)]
    return np.isin(tasks, picked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("release")
    parser.add_argument("--split", default="by_network")
    parser.add_argument("--validation-networks", nargs="*", default=["vit_b16_block", "mobilenet_v2"])
    parser.add_argument("--configs", nargs="*", default=list(GRID), help="Names of GRID entries to run.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from cwm_bench.metrics.evaluator import Evaluator
    from cwm_bench.model import create_model, load_side

    torch.set_num_threads(1)
    side = load_side(args.release, args.split, "train", {"actions", "hardware"})
    valid = carve_out(side, args.split, args.validation_networks, args.seed)
    fit_rows, val_rows = np.flatnonzero(~valid), np.flatnonzero(valid)
    labelled = side.labelled().take(fit_rows)
    val_tasks, val_latency = side.task_ids[val_rows], side.latency_s[val_rows]
    print(f"{args.release} {args.split} train side: {len(np.unique(side.task_ids[fit_rows]))} tasks fit "
          f"({len(fit_rows)} records), {len(np.unique(val_tasks))} validation tasks ({len(val_rows)} records)")
    results = []
    for name in args.configs:
        options = {**GRID[name], "seed": args.seed}
        model = create_model("world-model", **options)
        started = time.perf_counter()
        model.fit(labelled, progress=False)
        scores = model.score(side.records.take(val_rows))
        opa = Evaluator(metrics=["opa"]).eval(
            {"task_id": val_tasks, "y_true_latency": val_latency, "y_score": scores})["opa"]["mean"]
        results.append((opa, name, options))
        print(f"  {name:<34} validation OPA {opa:.4f}   ({time.perf_counter() - started:.0f} s) {json.dumps(options)}",
              flush=True)
    best = max(results)
    print(f"chosen: {best[1]} (validation OPA {best[0]:.4f})")


if __name__ == "__main__":
    main()
