"""`tune --network` and `e2e` on a tiny torch network: tuned, compiled with Relax, timed against PyTorch."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner
from torch import nn

from cwm_bench.cli import main
from cwm_bench.tuning.run_log import read_run, run_folders
from cwm_bench.workload import networks, relax_import


def _tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32)).eval()


def _tiny_input() -> tuple[torch.Tensor, ...]:
    return (torch.randn(4, 64, generator=torch.Generator().manual_seed(0)),)


def test_tune_a_network_then_compile_it_and_time_it_against_pytorch(tmp_path, monkeypatch):
    spec = networks.NetworkSpec("tiny_mlp", _tiny_mlp, _tiny_input, "a 2-layer MLP (test only)")
    monkeypatch.setitem(networks.NETWORKS, "tiny_mlp", spec)
    monkeypatch.setenv("CWM_BENCH_CACHE", str(tmp_path / "cache"))
    tasks = relax_import.network_tasks("tiny_mlp")
    assert 1 <= len(tasks) <= 4
    out = str(tmp_path / "tuned")
    runner = CliRunner()
    result = runner.invoke(main, ["tune", "--network", "tiny_mlp", "--baselines", "random", "--budget", "4",
                                  "--per-iter", "4", "--seeds", "1", "--out", out, "--no-progress"])
    assert result.exit_code == 0, result.output
    (folder,) = run_folders(out)
    summary = read_run(folder)
    assert summary["group"] == "network-tiny_mlp" and summary["trials"] == 4 * len(tasks)
    tuned_tasks = {t["task_name"] for t in summary["tasks"] if t["best_latency_s"]}

    report = tmp_path / "e2e.json"
    result = runner.invoke(main, ["e2e", "--network", "tiny_mlp", "--tuned", out, "--rounds", "3",
                                  "--no-torch-compile", "--json", str(report)])
    assert result.exit_code == 0, result.output
    e2e = json.loads(report.read_text())
    assert set(e2e["tuned"]) == tuned_tasks and not set(e2e["fallback"]) & tuned_tasks
    assert e2e["max_abs_error"] < 1e-3  # the tuned network computes what PyTorch computes
    assert e2e["tvm_ms"] > 0 and e2e["torch_ms"]["eager"] > 0 and e2e["torch_ms"]["compile"] is None
    assert "TVM speedup" in result.output and "not run (--no-torch-compile)" in result.output


def test_e2e_refuses_folders_without_runs(tmp_path):
    result = CliRunner().invoke(main, ["e2e", "--network", "resnet18", "--tuned", str(tmp_path)])
    assert result.exit_code == 1 and "no tuning runs under" in result.output
