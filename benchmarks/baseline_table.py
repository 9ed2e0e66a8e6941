"""Train and evaluate every baseline on every split of a release, then print the Markdown table.

    .venv/bin/python benchmarks/baseline_table.py RELEASE_DIR --out results/ [--models ...]

Each step is the public CLI (`cwm-bench train` / `evaluate` / `report`), so the table can be
reproduced by hand command by command; the commands are echoed as they run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

TRAINABLE = ("ansor-xgb", "ansor-xgb-rank", "tenset-mlp", "tlp")
FLOORS = ("random", "flops")
SPLITS = ("within_task", "by_network", "by_operator")


def run(args: list[str]) -> None:
    print("$ cwm-bench " + " ".join(shlex.quote(a) for a in args), flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cwm_bench.cli", *args], check=True)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("release")
    parser.add_argument("--out", default="results")
    parser.add_argument("--models", nargs="*", default=[*FLOORS, *TRAINABLE])
    parser.add_argument("--splits", nargs="*", default=list(SPLITS))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = []
    for split in args.splits:
        for model in args.models:
            result = os.path.join(args.out, f"{model}-{split}.json")
            if model in TRAINABLE:
                checkpoint = os.path.join(args.out, "checkpoints", f"{model}-{split}")
                run(["train", "--model", model, "--data", args.release, "--split", split, "--out", checkpoint,
                     "--no-progress"])
                run(["evaluate", "--model", checkpoint, "--data", args.release, "--split", split, "--json", result])
            else:
                run(["evaluate", "--model", model, "--data", args.release, "--split", split, "--json", result])
            results.append(result)
    run(["report", *results, "--png", os.path.join(args.out, "opa.png")])


if __name__ == "__main__":
    main()
