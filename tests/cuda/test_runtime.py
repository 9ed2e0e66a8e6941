"""The runtime-only TVM copy that travels to the GPU machine, and the device-side script."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.cuda.conftest import has_gpu

CHECK = """
import sys, numpy as np, tvm
assert tvm.__file__.startswith(sys.argv[2]), tvm.__file__
assert tvm.base._RUNTIME_ONLY and "tvm_compiler" not in tvm.base._LOADED_LIBS
m = tvm.runtime.load_module(sys.argv[1])
a = tvm.runtime.tensor(np.arange(16, dtype="float32")); b = tvm.runtime.tensor(np.zeros(16, "float32"))
m["main"](a, b)
assert (b.numpy() == 2 * np.arange(16)).all()
print(len(m.time_evaluator("main", tvm.cpu(0), number=2, repeat=2)(a, b).results))
"""


def test_runtime_copy_imports_and_runs_an_llvm_module(tmp_path, tools_on_path):
    import make_runtime_bundle
    import tvm
    from tvm import te

    a = te.placeholder((16,), name="a")
    b = te.compute((16,), lambda i: a[i] * 2.0, name="b")
    lib = str(tmp_path / "double.so")
    tvm.compile(te.create_prim_func([a, b]), target=tvm.target.Target({"kind": "llvm"})).export_library(lib)
    runtime = tmp_path / "runtime"
    size = make_runtime_bundle.make_runtime(str(runtime), ffi_from_installed=True)
    assert size < 40 * 2**20
    site = str(runtime / "site")
    assert not os.path.exists(os.path.join(site, "tvm", "lib", "libtvm_compiler.so"))
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1", PYTHONPATH=site)
    done = subprocess.run([sys.executable, "-c", CHECK, lib, site], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("2")


def test_worker_answers_or_reports_an_error(tools_on_path):
    import cuda_measure

    worker = cuda_measure.WorkerProcess(timeout=120)
    try:
        status, value = worker.call("info")
    finally:
        worker.kill()
    assert status in ("ok", "run_error"), value
    if status == "ok":
        assert value["multi_processor_count"] > 0


@pytest.mark.device
@pytest.mark.skipif(not has_gpu(), reason="needs an NVIDIA GPU (run through the device tool)")
def test_measure_a_bundle_on_the_gpu(cuda_bundle, tmp_path):
    script = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "cuda_measure.py")
    done = subprocess.run([sys.executable, script, cuda_bundle, "--out", str(tmp_path), "--rounds", "2"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert len(results) == 3 and all(r["status"] == "ok" and len(r["latencies_s"]) == 6 for r in results.values())
    device = json.loads((tmp_path / "device.json").read_text())
    assert device["tvm_device"]["multi_processor_count"] > 0
