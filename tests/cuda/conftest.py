"""A small CUDA bundle (3 random 64x64x64 matmul kernels, built here with nvcc), shared by the tests."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

TOOLS = os.path.join(os.path.dirname(__file__), "..", "..", "tools")


def has_nvcc() -> bool:
    return shutil.which("nvcc") is not None or os.path.exists("/usr/local/cuda/bin/nvcc")


# Builds for a CUDA target compile kernels with nvcc (and load TVM's CUDA runtime: libcudart)
needs_nvcc = pytest.mark.skipif(not has_nvcc(), reason="nvcc is needed to compile CUDA kernels")


def has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and os.path.exists("/dev/nvidia0")


@pytest.fixture(scope="session")
def tools_on_path():
    sys.path.insert(0, os.path.abspath(TOOLS))
    yield
    sys.path.remove(os.path.abspath(TOOLS))


@pytest.fixture(scope="session")
def cuda_bundle(tmp_path_factory) -> str:
    from cwm_bench.cuda.build import build_cuda_bundle
    from cwm_bench.hardware import GPU_PRESETS
    from cwm_bench.workload.suites import select_workloads

    if not has_nvcc():
        pytest.skip("nvcc is needed to compile CUDA kernels")
    out = tmp_path_factory.mktemp("cuda-bundles")
    workloads = select_workloads("mini:matmul_64x64x64", "cuda")
    bundles = build_cuda_bundle(workloads, GPU_PRESETS["h100"], str(out), per_task=3, build_workers=1,
                                log=lambda text: None)
    assert len(bundles) == 1
    return bundles[0]
