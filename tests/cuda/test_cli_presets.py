"""`build-cuda --gpu` offers exactly the presets of `cwm_bench.hardware.GPU_PRESETS` (no list of its own)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import click
import pytest
from click.testing import CliRunner

import cwm_bench.cli.cuda as cli_cuda
from cwm_bench.cli import main
from cwm_bench.hardware import GPU_PRESETS, HardwareDescriptor


def _gpu_option() -> click.Option:
    (option,) = [p for p in main.commands["build-cuda"].params if p.name == "gpu"]
    assert isinstance(option.type, click.Choice)
    return option


def _gpu_choices() -> list[str]:
    return list(_gpu_option().type.choices)


def test_gpu_choices_are_the_presets():
    assert _gpu_choices() == list(GPU_PRESETS)
    assert _gpu_option().default in GPU_PRESETS


@pytest.fixture
def fake_build(monkeypatch):
    """Stand-ins for the TVM-heavy modules `build-cuda` imports when it runs; records what it was asked to build."""
    calls: list[dict] = []
    build = types.ModuleType("cwm_bench.cuda.build")

    def build_cuda_bundle(workloads, hardware, out_dir, per_task, **kwargs):
        calls.append({"workloads": workloads, "hardware": hardware, "out_dir": out_dir, "per_task": per_task})
        return [f"{out_dir}/bundle-000"]

    build.build_cuda_bundle = build_cuda_bundle
    suites = types.ModuleType("cwm_bench.workload.suites")
    suites.UnknownSuiteError = type("UnknownSuiteError", (ValueError,), {})
    suites.select_workloads = lambda suite, target: ["w0", "w1"]
    monkeypatch.setitem(sys.modules, "cwm_bench.cuda.build", build)
    monkeypatch.setitem(sys.modules, "cwm_bench.workload.suites", suites)
    return calls


def test_a_preset_added_to_gpu_presets_is_accepted(fake_build, tmp_path):
    new = HardwareDescriptor(kind="gpu", name="NVIDIA B200", arch="sm_100", num_cores=148)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(GPU_PRESETS, "b200", new)
            importlib.reload(cli_cuda)  # the options are built when the module is imported
            assert "b200" in _gpu_choices()
            result = CliRunner().invoke(main, ["build-cuda", "--gpu", "b200", "--out", str(tmp_path / "b")])
            assert result.exit_code == 0, result.output
            assert fake_build[-1]["hardware"] is new
    finally:
        importlib.reload(cli_cuda)  # back to the real presets for the other tests
    assert "b200" not in _gpu_choices()


def test_an_unknown_gpu_is_refused_with_the_presets_listed(fake_build, tmp_path):
    result = CliRunner().invoke(main, ["build-cuda", "--gpu", "no-such-gpu", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and not fake_build
    assert all(name in result.output for name in GPU_PRESETS)


def test_the_cli_imports_without_tvm():
    code = ("import sys, cwm_bench.cli; "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tvm', 'torch', 'xgboost'}); "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""
