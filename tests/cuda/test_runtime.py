"""The runtime-only TVM copy that travels to the GPU machine, and the device-side script."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile

import pytest

from tests.cuda.conftest import TOOLS, has_gpu

CHECK = """
import sys, numpy as np, tvm
assert tvm.__file__.startswith(sys.argv[2]), tvm.__file__
assert tvm.base._RUNTIME_ONLY and "tvm_compiler" not in tvm.base._LOADED_LIBS
m = tvm.runtime.load_module(sys.argv[1])
a = tvm.runtime.tensor(np.arange(16, dtype="float32")); b = tvm.runtime.tensor(np.zeros(16, "float32"))
m["main"](a, b)
assert (b.numpy() == 2 * np.arange(16)).all()
print(len(m.time_evaluator("main", tvm.cpu(0), number=2, repeat=2)(a, b).results))
# the device's loader asks this callback for each kernel's binary: served from the bundle by digest
sys.path.insert(0, sys.argv[3])
import cuda_worker
cuda_worker.serve_device_binaries([sys.argv[4]])
compile_cuda = tvm.get_global_func("tvm_callback_cuda_compile")
assert compile_cuda("__global__ void k() {}") == b"\x7fELF cubin"
try:
    compile_cuda("another source")
    raise AssertionError("an unknown kernel must not load")
except RuntimeError as exc:
    assert "no cubin for kernel source" in str(exc), exc
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
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    digest = hashlib.sha256(b"__global__ void k() {}").hexdigest()
    (kernels / f"{digest}.cubin").write_bytes(b"\x7fELF cubin")
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1", PYTHONPATH=site)
    done = subprocess.run([sys.executable, "-c", CHECK, lib, site, TOOLS, str(kernels)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("2")


def test_payload_unpacks_and_the_device_script_stops_cleanly_without_a_gpu(cuda_bundle, tmp_path, tools_on_path):
    import make_runtime_bundle
    import pack_for_device

    runtime = tmp_path / "runtime"
    make_runtime_bundle.make_runtime(str(runtime), ffi_from_installed=True)
    assert (runtime / "site" / "tvm" / "lib" / "libtvm_runtime_cuda.so").exists()
    payload = tmp_path / "payload"
    sizes = pack_for_device.pack(str(runtime), [cuda_bundle], str(payload))
    (name,) = (payload / "bundles.txt").read_text().split()
    archive_name = "bundles/" + name.removeprefix("bundles/").replace("/", "--") + ".tar.xz"
    assert set(sizes) == {"runtime.tar.xz", archive_name} and sum(sizes.values()) < 20 * 2**20
    packed_at = os.path.getmtime(payload / archive_name)
    pack_for_device.pack(str(runtime), [cuda_bundle], str(payload))
    assert os.path.getmtime(payload / archive_name) == packed_at  # up to date: not packed again
    with tarfile.open(payload / archive_name) as archive:
        members = set(archive.getnames())
    assert f"{name}/manifest.json" in members and not any(m.endswith(".parquet") for m in members)
    assert any(m.startswith(f"{name}/kernels/") and m.endswith(".cubin") for m in members)
    with pytest.raises(SystemExit, match="share a name"):
        pack_for_device.pack(str(runtime), [cuda_bundle, cuda_bundle], str(tmp_path / "p1"))
    with pytest.raises(SystemExit, match="no manifest.json"):
        pack_for_device.pack(str(runtime), [str(tmp_path)], str(tmp_path / "p2"))
    if has_gpu():
        pytest.skip("a GPU is present: the no-GPU path does not apply")
    out = tmp_path / "out"
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    done = subprocess.run(["bash", os.path.join(TOOLS, "cuda_device_run.sh"), str(payload), str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "no CUDA device through TVM" in (out / "log.txt").read_text()
    assert "error" in json.loads((out / "device.json").read_text())["tvm_device"]
    assert not (out / "results.json").exists()


def test_worker_answers_or_reports_an_error(tools_on_path):
    import cuda_worker

    worker = cuda_worker.WorkerProcess(timeout=120)
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
    done = subprocess.run([sys.executable, script, cuda_bundle, "--out", str(tmp_path), "--rounds", "2",
                           "--remeasure-fraction", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert len(results) == 3 and all(r["status"] == "ok" and len(r["latencies_s"]) == 6 for r in results.values())
    assert all(r["checked"] for r in results.values())
    again = json.loads((tmp_path / "remeasure.json").read_text())["results"]
    assert again.keys() == results.keys()
    device = json.loads((tmp_path / "device.json").read_text())
    assert device["tvm_device"]["multi_processor_count"] > 0
