"""Cross-hardware transfer: train cost models on one machine's release, rank programs of another's, with
and without a few hundred of the new machine's records; then print the Markdown table.

    .venv/bin/python benchmarks/transfer_table.py SOURCE_RELEASE TARGET_RELEASE --out results/transfer \\
        [--models ...] [--split within_task] [--finetune-records 300] [--seed 0]

For each trainable model, four rows, all evaluated on TARGET's test side of --split:

    in-hardware      trained on TARGET's whole train side (the in-hardware reference)
    zero-shot        trained on SOURCE only (its train side of --split; --source-split all: every record)
    fine-tuned (N)   the zero-shot checkpoint trained on with `train --init` on N records of TARGET's train side
    target-only (N)  trained from scratch on the same N records (`--max-train-records N --seed S` picks them)

plus the floors (random, flops) on the same test side. Every step is the public CLI (`cwm-bench train` /
`evaluate --label` / `report`), echoed as it runs, so any row can be reproduced by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

TRAINABLE = ("ansor-xgb", "ansor-xgb-rank", "tenset-mlp", "tlp", "world-model")
FLOORS = ("random", "flops")
SPLITS = ("within_task", "by_network", "by_operator")


def run(args: list[str], dry_run: bool = False) -> None:
    print("$ cwm-bench " + " ".join(shlex.quote(a) for a in args), flush=True)
    if dry_run:
        return
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cwm_bench.cli", *args], check=True)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def model_configs(pairs: list[str], option: str) -> dict[str, dict]:
    """`MODEL=JSON` pairs (repeatable options) as {model: config}."""
    configs: dict[str, dict] = {}
    for pair in pairs:
        model, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"{option} {pair!r}: expected MODEL=JSON, e.g. 'tlp={{\"epochs\": 10}}'")
        configs[model] = {**configs.get(model, {}), **json.loads(text)}
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="release the models are first trained on (e.g. the CPU release)")
    parser.add_argument("target", help="release of the hardware transferred to (train sample and test side)")
    parser.add_argument("--out", default="results/transfer")
    parser.add_argument("--models", nargs="*", default=[*FLOORS, *TRAINABLE])
    parser.add_argument("--split", choices=SPLITS, default="within_task", help="scheme of both releases' sides")
    parser.add_argument("--source-split", choices=("train", "all"), default="train",
                        help="train: SOURCE's train side of --split, so no test program or task of the scheme is "
                             "seen on any hardware; all: every SOURCE record")
    parser.add_argument("--finetune-records", type=int, default=300, help="N records of TARGET's train side")
    parser.add_argument("--seed", type=int, default=0, help="seed of the N-record sample")
    parser.add_argument("--config", action="append", default=[], metavar="MODEL=JSON",
                        help="options for every training of MODEL (repeatable)")
    parser.add_argument("--finetune-config", action="append", default=[], metavar="MODEL=JSON",
                        help="training options changed for the fine-tuning step only, e.g. 'tlp={\"lr\": 3e-4}'")
    parser.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    args = parser.parse_args()
    unknown = sorted(set(args.models) - set(TRAINABLE) - set(FLOORS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {[*FLOORS, *TRAINABLE]}")
    configs = model_configs(args.config, "--config")
    finetune = model_configs(args.finetune_config, "--finetune-config")
    n, split, target = args.finetune_records, args.split, args.target
    print(f"# {args.source} -> {target}, split {split} (source side: {args.source_split}), "
          f"fine-tuning on {n} target records (seed {args.seed})", flush=True)
    os.makedirs(args.out, exist_ok=True)
    sample = ["--max-train-records", str(n), "--seed", str(args.seed)]
    results = []

    def evaluate(model_ref: str, name: str, label: str | None) -> None:
        result = os.path.join(args.out, f"{name}.json")
        results.append(result)
        if os.path.exists(result):  # resuming: this row is done
            return
        run(["evaluate", "--model", model_ref, "--data", target, "--split", split, "--json", result,
             *(["--label", label] if label else [])], args.dry_run)

    for model in args.models:
        if model in FLOORS:
            evaluate(model, model, None)
            continue
        config = ["--config", json.dumps(configs[model])] if model in configs else []
        tuned = {**configs.get(model, {}), **finetune.get(model, {})}
        ckpt = {v: os.path.join(args.out, "checkpoints", f"{model}-{v}") for v in ("in-hw", "zero", "ft", "small")}
        steps = [  # (variant, row label, train arguments)
            ("in-hw", f"{model} in-hardware", ["--data", target, "--split", split, *config]),
            ("zero", f"{model} zero-shot", ["--data", args.source, "--split",
                                           split if args.source_split == "train" else "all", *config]),
            ("ft", f"{model} fine-tuned ({n})", ["--init", ckpt["zero"], "--data", target, "--split", split, *sample,
                                                 *(["--config", json.dumps(tuned)] if tuned else [])]),
            ("small", f"{model} target-only ({n})", ["--data", target, "--split", split, *sample, *config]),
        ]
        for variant, label, train_args in steps:
            if not os.path.exists(os.path.join(ckpt[variant], "training.json")):
                run(["train", "--model", model, *train_args, "--out", ckpt[variant], "--no-progress"], args.dry_run)
            evaluate(ckpt[variant], f"{model}-{variant}", label)
    if not args.dry_run:
        run(["report", *results, "--png", os.path.join(args.out, "opa.png")])


if __name__ == "__main__":
    main()
