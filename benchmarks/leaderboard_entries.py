"""The leaderboard's first entries: our baselines and the reference world model, each a submission
folder scored by `cwm-bench submit` like anyone else's, then `cwm-bench leaderboard render`.

    .venv/bin/python benchmarks/leaderboard_entries.py [--live] [--force] [--only NAME ...]

Each entry is `leaderboard/submissions/<model>/`: a checkpoint trained on the `by_network` train side
of `cwm-bench-cpu-v0` (trained here when absent; the world model and the ansor-xgb of the live-tuning
benchmark are copied when their checkpoints exist) and a model_meta.yaml written from ENTRIES below.
Scored on the `by_network` test side (18 tasks no entry trained on). `--live` adds the live score
(64 trials on the 2 cheapest held-out tasks, seed 0) for the entries in LIVE. `--force` replaces
results already on the board.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time

import yaml

DATASET = "datasets/cwm-bench-cpu-v0"
SPLIT = "by_network"
SUBMISSIONS = "leaderboard/submissions"
CODE = "https://github.com/cwm-bench/cwm-bench/blob/main/"
# name -> (description, code path in this repository, paper, checkpoint to copy if present)
ENTRIES = {
    "world-model": ("Reference world model: encoder over the initial program's blocks, GRU transition over the "
                    "addressed schedule steps, ranking head with hardware features (LambdaRank).",
                    "reference_model/world_model.py", "https://arxiv.org/abs/2606.09312",
                    "reference_model/checkpoints/cpu-v0-by_network-seed0"),
    "ansor-xgb": ("Ansor's cost model: XGBoost regression on MetaSchedule per-store features.",
                  "baselines/ansor_xgb.py", "https://arxiv.org/abs/2006.06762",
                  "results/live-tuning/checkpoints/ansor-xgb-cpu-v0-by_network"),
    "ansor-xgb-rank": ("XGBoost with a pairwise ranking objective on per-store features.", "baselines/ansor_xgb.py",
                       "https://arxiv.org/abs/2006.06762", None),
    "tenset-mlp": ("TenSet's MLP over per-store features with a ranking loss.", "baselines/tenset_mlp.py",
                   "https://openreview.net/forum?id=aIfp8kLuvc9", None),
    "tlp": ("TLP: a transformer over the schedule primitives (actions).", "baselines/tlp.py",
            "https://arxiv.org/abs/2211.03578", None),
    "flops": ("Floor: scores a program by its task's FLOPs (one value per task: no ranking inside a task).",
              "baselines/floors.py", None, None),
    "random": ("Floor: uniform random scores.", "baselines/floors.py", None, None),
}
LIVE = ("world-model", "ansor-xgb")


def run(args: list[str]) -> None:
    print("$ " + " ".join(shlex.quote(a) for a in args), flush=True)
    started = time.perf_counter()
    subprocess.run(args, check=True)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


def count_parameters(checkpoint: str) -> int:
    """Learned numbers in a checkpoint: safetensors tensor elements, XGBoost tree nodes (JSON)."""
    total = 0
    for name in sorted(os.listdir(checkpoint)):
        path = os.path.join(checkpoint, name)
        if name.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(path, "np") as handle:
                total += sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())
        elif name.endswith(".json") and name not in ("config.json", "training.json"):
            with open(path) as f:
                data = json.load(f)
            trees = data.get("learner", {}).get("gradient_booster", {}).get("model", {}).get("trees", [])
            total += sum(len(t.get("split_indices", [])) for t in trees)
    return total


def prepare(name: str) -> str:
    description, code, paper, source = ENTRIES[name]
    folder = os.path.join(SUBMISSIONS, name)
    checkpoint = os.path.join(folder, "checkpoint")
    if not os.path.exists(os.path.join(checkpoint, "training.json")):
        if source and os.path.exists(os.path.join(source, "training.json")):
            shutil.copytree(source, checkpoint, dirs_exist_ok=True)
        else:
            run([sys.executable, "-m", "cwm_bench.cli", "train", "--model", name, "--data", DATASET, "--split", SPLIT,
                 "--out", checkpoint, "--no-progress"])
    meta = {"name": f"cwm-bench/{name}", "version": "0.1", "authors": ["CWM-Bench team"], "description": description,
            "license": "apache-2.0", "code_url": CODE + code, "paper": paper,
            "num_parameters": count_parameters(checkpoint),
            "training_data": [{"dataset": "cwm-bench-cpu-v0", "split": SPLIT, "side": "train"}],
            "submission": {"kind": "code", "include": "cwm_bench." + code[:-3].replace("/", "."),
                           "checkpoint": "checkpoint"}}
    with open(os.path.join(folder, "model_meta.yaml"), "w") as handle:
        yaml.safe_dump(meta, handle, sort_keys=False, width=110)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--live", action="store_true")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--only", nargs="*", default=list(ENTRIES))
    args = parser.parse_args()
    for name in args.only:
        folder = prepare(name)
        if os.path.exists(os.path.join("leaderboard", "results", f"cwm-bench__{name}", "0.1.json")) and not args.force:
            print(f"{name}: already on the board (--force replaces it)")
            continue
        command = [sys.executable, "-m", "cwm_bench.cli", "submit", folder, "--data", DATASET, "--split", SPLIT]
        if args.live and name in LIVE:
            command += ["--live-budget", "64", "--live-tasks", "2", "--live-seeds", "1"]
        run(command + (["--force"] if args.force else []))
    run([sys.executable, "-m", "cwm_bench.cli", "leaderboard", "render"])


if __name__ == "__main__":
    main()
