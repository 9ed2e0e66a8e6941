"""Train and evaluate every baseline on every split of a release over several seeds, then print the table.

    .venv/bin/python benchmarks/baseline_table.py RELEASE_DIR --out results/ [--seeds 0 1 2] [--models ...]

A model may also be a variant, `LABEL=MODEL:JSON` (e.g. 'no-dynamics=world-model:{"dynamics": false}'):
MODEL trained with those options, reported as LABEL (the ablation table).

Each step is the public CLI (`cwm-bench train --config '{"seed": S}'` / `evaluate`), echoed as it runs,
so every cell can be reproduced by hand. Steps whose output exists are skipped: an interrupted run
resumes (`--phase train` fits the checkpoints only; `--phase table` only reads the result files).

A cell is the mean over test tasks of the metric, each task's value first averaged over the seeds
(seeds pooled), ± half the bootstrap 95% interval over tasks; `seed sd` is the spread of the
per-seed means over tasks. Beside each split: the two-run agreement of the re-measured programs and
the estimated accuracy of an oracle that knew the true latencies (`cwm_bench.noise`).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

TRAINABLE = ("ansor-xgb", "ansor-xgb-rank", "tenset-mlp", "tlp", "world-model")
FLOORS = ("random", "flops")
SEEDLESS = ("flops",)  # deterministic: one run
SPLITS = ("within_task", "by_network", "by_operator")
COLUMNS = (("opa", "OPA"), ("kendall_tau", "Kendall τ"), ("top1", "top-1"), ("slowdown@1", "slowdown@1"),
           ("ndcg@10", "NDCG@10"))


def run(args: list[str]) -> None:
    print("$ cwm-bench " + " ".join(shlex.quote(a) for a in args), flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cwm_bench.cli", *args], check=True)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def variant(spec: str) -> tuple[str, str, dict]:
    """`MODEL` or `LABEL=MODEL:JSON` -> (label, model, options)."""
    label, sep, rest = spec.partition("=")
    if not sep:
        return spec, spec, {}
    model, _, options = rest.partition(":")
    return label, model, json.loads(options or "{}")


def steps(release: str, out: str, models: list[str], splits: list[str], seeds: list[int], phase: str) -> None:
    for split in splits:
        for spec in models:
            label, model, options = variant(spec)
            labelled = ["--label", label] if label != model else []
            for seed in [0] if model in SEEDLESS else seeds:
                tag = f"{label}-{split}-seed{seed}"
                result = os.path.join(out, f"{tag}.json")
                config = json.dumps({**options, "seed": seed})
                if model in TRAINABLE:
                    checkpoint = os.path.join(out, "checkpoints", tag)
                    if not os.path.exists(os.path.join(checkpoint, "training.json")):
                        run(["train", "--model", model, "--data", release, "--split", split, "--config", config,
                             "--out", checkpoint, "--no-progress"])
                    if phase != "train" and not os.path.exists(result):
                        run(["evaluate", "--model", checkpoint, "--data", release, "--split", split,
                             "--json", result, *labelled])
                elif phase != "train" and not os.path.exists(result):
                    extra = [] if model in SEEDLESS else ["--config", config]
                    run(["evaluate", "--model", model, "--data", release, "--split", split, *extra, "--json", result,
                         *labelled])


def _bootstrap_half_ci(values: np.ndarray, n: int = 1000, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    samples = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    return float((np.percentile(samples, 97.5) - np.percentile(samples, 2.5)) / 2)


def table(out: str) -> str:
    """The Markdown table of every result file in `out` (seeds pooled per model and split)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for path in sorted(glob.glob(os.path.join(out, "*.json"))):
        with open(path) as handle:
            result = json.load(handle)
        groups.setdefault((result["split"], result.get("label") or result["model"]), []).append(result)
    if not groups:
        raise SystemExit(f"{out}: no result files")
    header = "| split | model | seeds | " + " | ".join(label for _, label in COLUMNS) + " | OPA seed sd |"
    lines = [header, "|" + "---|" * 3 + "---:|" * (len(COLUMNS) + 1)]
    references = {}
    for (split, model), results in sorted(groups.items()):
        tasks = sorted(results[0]["per_task"])
        if any(sorted(r["per_task"]) != tasks for r in results):
            raise SystemExit(f"{split} {model}: seeds were evaluated on different tasks")
        cells = []
        for metric, _ in COLUMNS:
            per_seed = np.array([[np.nan if r["per_task"][t][metric] is None else r["per_task"][t][metric]
                                  for t in tasks] for r in results], dtype=np.float64)
            pooled = per_seed.mean(axis=0)
            pooled = pooled[np.isfinite(pooled)]
            cells.append(f"{pooled.mean():.3f} ± {_bootstrap_half_ci(pooled):.3f}" if pooled.size else "–")
        opa_means = [np.nanmean([r["per_task"][t]["opa"] for t in tasks]) for r in results]
        sd = f"{np.std(opa_means, ddof=1):.3f}" if len(results) > 1 else "–"
        lines.append(f"| {split} | {model} | {len(results)} | " + " | ".join(cells) + f" | {sd} |")
        notes = results[0].get("notes", {})
        references[split] = (notes.get("two_run_agreement_opa"), notes.get("oracle_opa_estimate"),
                             results[0]["num_tasks"], results[0]["num_programs"])
    lines.append("")
    for split, (agreement, oracle, tasks, programs) in sorted(references.items()):
        def fmt(value):
            return "–" if value is None else f"{value:.3f}"
        lines.append(f"- `{split}` test side: {programs:,} programs of {tasks} tasks; two-run agreement "
                     f"{fmt(agreement)}, estimated oracle OPA {fmt(oracle)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("release")
    parser.add_argument("--out", default="results")
    parser.add_argument("--models", nargs="*", default=[*FLOORS, *TRAINABLE])
    parser.add_argument("--splits", nargs="*", default=list(SPLITS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--phase", choices=("all", "train", "table"), default="all")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    started = time.perf_counter()
    if args.phase != "table":
        steps(args.release, args.out, args.models, args.splits, args.seeds, args.phase)
    if args.phase != "train":
        print(table(args.out))
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
