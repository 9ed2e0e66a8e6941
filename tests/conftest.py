"""Shared fixtures: real TVM objects, built once per test session (TVM work is the slow part)."""

from __future__ import annotations

import os
import tempfile

import pytest

# `collect --overlap auto` reads per-machine verdicts from this cache: tests never see the developer's.
os.environ["CWM_BENCH_CACHE"] = tempfile.mkdtemp(prefix="cwm-bench-test-cache-")


@pytest.fixture(scope="session")
def hardware():
    from cwm_bench.hardware import detect_cpu

    return detect_cpu()


@pytest.fixture(scope="session")
def target(hardware):
    from cwm_bench.hardware import target_for
    from cwm_bench.tvm_env import load_tensor_intrinsics

    load_tensor_intrinsics("llvm")
    return target_for(hardware)


@pytest.fixture(scope="session")
def matmul():
    from cwm_bench.workload.operators import MINI_OPERATORS, operator_workload

    return operator_workload(next(s for s in MINI_OPERATORS if s.name == "matmul_64x64x64"))


@pytest.fixture(scope="session")
def generator(matmul, target):
    from cwm_bench.candidates.generate import CandidateGenerator

    return CandidateGenerator(matmul, target, seed=5)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, hardware):
    """A real collected dataset: 2 mini tasks x 6 records, quick protocol."""
    from cwm_bench.collect import CollectConfig, Collector
    from cwm_bench.measure.protocol import MeasureProtocol
    from cwm_bench.workload.suites import select_workloads

    out = str(tmp_path_factory.mktemp("tiny") / "data")
    config = CollectConfig(per_task=6, batch_size=3, protocol=MeasureProtocol(
        rounds=2, repeats_per_round=2, min_repeat_ms=2, check_fraction=1.0))
    Collector(hardware, out, config).run(select_workloads("mini:matmul_64x64x64,softmax_64x128"))
    return out


@pytest.fixture
def hub_offline(monkeypatch, tmp_path):
    """No Hugging Face network, and a private HF_HOME: Hub code is tested offline with real loaders."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
