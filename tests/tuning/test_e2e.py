"""`tune --network` and `e2e` on a tiny torch network: tuned, compiled with Relax, timed against PyTorch.

Both commands run in their own process (as users run them), with the tiny network registered first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from click.testing import CliRunner
from torch import nn

from cwm_bench.cli import main
from cwm_bench.tuning.run_log import read_run, run_folders

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32)).eval()


def _tiny_input() -> tuple[torch.Tensor, ...]:
    return (torch.randn(4, 64, generator=torch.Generator().manual_seed(0)),)


def register() -> None:
    from cwm_bench.workload import networks

    networks.NETWORKS["tiny_mlp"] = networks.NetworkSpec("tiny_mlp", _tiny_mlp, _tiny_input, "a 2-layer MLP (test)")


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    code = ("import sys; from tests.tuning.test_e2e import register; register(); "
            "from cwm_bench.cli import main; main(sys.argv[1:])")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_tune_a_network_then_compile_it_and_time_it_against_pytorch(tmp_path):
    env = {**os.environ, "CWM_BENCH_CACHE": str(tmp_path / "cache")}
    out = str(tmp_path / "tuned")
    result = _cli(["tune", "--network", "tiny_mlp", "--baselines", "random", "--budget", "4", "--per-iter", "4",
                   "--seeds", "1", "--out", out, "--no-progress"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = run_folders(out)
    summary = read_run(folder)
    tasks = len(summary["tasks"])
    assert summary["group"] == "network-tiny_mlp" and 1 <= tasks <= 4 and summary["trials"] >= 4 * tasks

    report = tmp_path / "e2e.json"
    result = _cli(["e2e", "--network", "tiny_mlp", "--tuned", out, "--rounds", "3", "--no-torch-compile",
                   "--json", str(report)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    e2e = json.loads(report.read_text())
    tuned_tasks = {t["task_name"] for t in summary["tasks"] if t["best_latency_s"]}
    assert tuned_tasks and tuned_tasks <= set(e2e["tuned"]) and not set(e2e["fallback"]) & tuned_tasks
    assert e2e["max_abs_error"] < 1e-3  # the tuned network computes what PyTorch computes
    assert e2e["tvm_ms"] > 0 and e2e["torch_ms"]["eager"] > 0 and e2e["torch_ms"]["compile"] is None
    assert "TVM speedup" in result.stdout and "not run (--no-torch-compile)" in result.stdout


def test_e2e_refuses_folders_without_runs(tmp_path):
    result = CliRunner().invoke(main, ["e2e", "--network", "resnet18", "--tuned", str(tmp_path)])
    assert result.exit_code == 1 and "no tuning runs under" in result.output
