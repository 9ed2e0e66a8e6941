"""Live tuning on held-out tasks: the README's table, resumable across sessions.

    .venv/bin/python benchmarks/live_tuning.py [--out results/live-tuning] [--tasks 8] [--seeds 5]
        [--budget 64] [--stage table|long|report|e2e|all] [--long-tasks 2] [--long-budget 640]
        [--networks resnet18 bert_base_layer] [--e2e-budget 32]

Tasks: the `by_network` test tasks of the CPU release (in no model's training data), the --tasks with
the fewest FLOPs (a rule fixed before any result: they are the cheapest to measure, so more seeds fit).
Contenders, all in MetaSchedule's default evolutionary search, same seeds and measurement path:
  world-model        reference_model/checkpoints/cpu-v0-by_network-seed0, frozen (trained on the release)
  ansor              TVM's XGBModel from scratch (the Ansor algorithm on today's TVM)
  ansor-pretrained   our ansor-xgb trained on the release's by_network train side, frozen
  random             random scores
Stages: `table` (--budget trials, --seeds seeds), `long` (ansor at --long-budget on the first
--long-tasks tasks, 1 seed: the "within 2% of 10x the budget" reference), `report` (tune-report →
benchmarks/live_tuning.last.txt and .png; the runs' trials and run.json copied to
benchmarks/live_tuning_runs/ so the table is reproducible from the repo), `e2e` (each of --networks
tuned whole with the world model, --e2e-budget trials per task, then `cwm-bench e2e` against PyTorch
→ benchmarks/live_tuning_e2e.last.txt). Every step is the public CLI, echoed; a killed stage resumes
where it stopped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time

RELEASE = "datasets/cwm-bench-cpu-v0"
WORLD_MODEL = "reference_model/checkpoints/cpu-v0-by_network-seed0"
RUNS_COPY = "benchmarks/live_tuning_runs"


def cli(args: list[str], capture: bool = False) -> str:
    print("$ cwm-bench " + " ".join(shlex.quote(a) for a in args), flush=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cwm_bench.cli", *args], check=True, text=True,
                          stdout=subprocess.PIPE if capture else None)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    return done.stdout or ""


def held_out_tasks(count: int) -> list[str]:
    """Workload ids of the `count` by_network test tasks with the fewest FLOPs."""
    from cwm_bench.tuning.tasks import resolve_workloads

    tasks = sorted(resolve_workloads([f"{RELEASE}:by_network"]), key=lambda w: (w.flops, w.workload_id))
    return [w.workload_id for w in tasks[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/live-tuning")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--long-tasks", type=int, default=2)
    parser.add_argument("--long-budget", type=int, default=640)
    parser.add_argument("--networks", nargs="*", default=["resnet18", "bert_base_layer"])
    parser.add_argument("--e2e-budget", type=int, default=32)
    parser.add_argument("--stage", choices=("table", "long", "report", "e2e", "all"), default="all")
    args = parser.parse_args()
    ids = held_out_tasks(args.tasks)
    pretrained = os.path.join(args.out, "checkpoints", "ansor-xgb-cpu-v0-by_network")
    if not os.path.exists(os.path.join(pretrained, "training.json")):
        cli(["train", "--model", "ansor-xgb", "--data", RELEASE, "--split", "by_network", "--out", pretrained,
             "--no-progress"])
    table, long = os.path.join(args.out, "table"), os.path.join(args.out, "long")
    if args.stage in ("table", "all"):
        cli(["tune", "--model", f"world-model={WORLD_MODEL}", "--baselines", "ansor,ansor-pretrained,random",
             "--pretrained", pretrained, "--workloads", f"{RELEASE}:by_network:{','.join(ids)}",
             "--budget", str(args.budget), "--seeds", str(args.seeds), "--out", table])
    if args.stage in ("long", "all"):
        cli(["tune", "--baselines", "ansor", "--workloads", f"{RELEASE}:by_network:{','.join(ids[:args.long_tasks])}",
             "--budget", str(args.long_budget), "--seeds", "1", "--out", long])
    if args.stage in ("report", "all"):
        report(args, table, long)
    if args.stage in ("e2e", "all"):
        end_to_end(args)


def end_to_end(args) -> None:
    from cwm_bench.hardware import detect_cpu

    cpu = detect_cpu()
    lines = [f"# benchmarks/live_tuning.py --stage e2e --networks {' '.join(args.networks)} --e2e-budget "
             f"{args.e2e_budget}",
             f"# printed {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {cpu.name} ({cpu.arch}, "
             f"{cpu.num_cores} cores); tuned with {WORLD_MODEL} (trained on the Intel release), seed 0", ""]
    for network in args.networks:
        out = os.path.join(args.out, "e2e", network)
        cli(["tune", "--network", network, "--model", f"world-model={WORLD_MODEL}", "--budget", str(args.e2e_budget),
             "--seeds", "1", "--out", out])
        lines += [f"$ cwm-bench e2e --network {network} --tuned {out}",
                  cli(["e2e", "--network", network, "--tuned", out], capture=True).rstrip(), ""]
    text = "\n".join(lines)
    with open("benchmarks/live_tuning_e2e.last.txt", "w") as handle:
        handle.write(text + "\n")
    print(text)


def report(args, table: str, long: str) -> None:
    from cwm_bench.hardware import detect_cpu
    from cwm_bench.tuning.run_log import run_folders

    if os.path.isdir(RUNS_COPY):
        shutil.rmtree(RUNS_COPY)
    for source in (table, long):
        for folder in run_folders(source) if os.path.isdir(source) else []:
            dest = os.path.join(RUNS_COPY, os.path.basename(source), os.path.relpath(folder, source))
            if not os.path.isdir(os.path.join(folder, "trials")):
                continue
            shutil.copytree(os.path.join(folder, "trials"), os.path.join(dest, "trials"))
            if os.path.exists(os.path.join(folder, "run.json")):
                shutil.copy(os.path.join(folder, "run.json"), dest)
    dirs = [d for d in (os.path.join(RUNS_COPY, "table"), os.path.join(RUNS_COPY, "long")) if os.path.isdir(d)]
    text = cli(["tune-report", *dirs, "--budget", str(args.budget), "--png", "benchmarks/live_tuning.png",
                "--json", "benchmarks/live_tuning.last.json"], capture=True)
    cpu = detect_cpu()
    header = (f"# benchmarks/live_tuning.py --tasks {args.tasks} --seeds {args.seeds} --budget {args.budget} "
              "(the table counts the runs finished so far: see its seeds and wins columns)\n"
              f"# printed {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {cpu.name} ({cpu.arch}, {cpu.num_cores} "
              f"cores), {platform.python_version()}; runs under {RUNS_COPY}\n\n")
    with open("benchmarks/live_tuning.last.txt", "w") as handle:
        handle.write(header + text)
    print(header + text)


if __name__ == "__main__":
    main()
