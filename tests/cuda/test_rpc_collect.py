"""`collect --target cuda --rpc-tracker`: kernels built here (cubins embedded, no GPU), timed on GPU
servers of a real TVM tracker. The servers are TVM's own RPC server with a fake CUDA device
(`tests/cuda/fake_gpu_server.py`: host memory, kernels that spin), killed and failed for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from click.testing import CliRunner

from cwm_bench.hardware import GPU_PRESETS, HardwareDescriptor
from cwm_bench.measure.loopback import LoopbackCluster, free_port
from tests.cuda.conftest import TOOLS, needs_nvcc

FAKE_SERVER = (os.path.join(os.path.dirname(__file__), "fake_gpu_server.py"),)
# What the fake cannot tell about itself; a small L2 keeps the flush copies (in host memory) cheap.
FAKE_GPU = HardwareDescriptor(kind="gpu", name="Fake GPU (host memory)", arch="sm_90", num_cores=132,
                              details={"max_threads_per_block": 1024, "max_shared_memory_per_block": 49152,
                                       "thread_warp_size": 32, "registers_per_block": 65536,
                                       "l2_cache_size_bytes": 2**20})

pytestmark = needs_nvcc


def _matmul_builds(tmp_path, device_binaries: bool):
    from cwm_bench.build.builder import ParallelBuilder
    from cwm_bench.cuda.build import reference_module
    from cwm_bench.hardware import target_for
    from cwm_bench.workload.suites import select_workloads

    (w,) = select_workloads("mini:matmul_64x64x64", "cuda")
    target = target_for(FAKE_GPU)
    builder = ParallelBuilder(str(target), 1, artifact_dir=str(tmp_path), device_binaries=device_binaries)
    try:
        (built,) = builder.build([("ref", reference_module(w.mod, target))])
    finally:
        builder.close()
    assert built.status == "ok", built.error
    return built.lib_path


def _stored_format(lib: str) -> str:
    """The format of the CUDA module inside an exported library, read by a loader in a fresh process."""
    code = ("import sys, tvm, tvm_ffi; sys.path.insert(0, sys.argv[2]); from fake_gpu_server import _read_module\n"
            "@tvm_ffi.register_global_func('ffi.Module.load_from_bytes.cuda', override=True)\n"
            "def load(blob):\n"
            "    fmt, names, binary = _read_module(bytes(blob)); print(fmt, binary[:4] == b'\\x7fELF', *names)\n"
            "    raise SystemExit(0)\n"
            "tvm.runtime.load_module(sys.argv[1])\n")
    done = subprocess.run([sys.executable, "-c", code, lib, os.path.dirname(FAKE_SERVER[0])],
                          capture_output=True, text=True, timeout=120)
    return done.stdout.strip()


def test_gpu_libraries_carry_cubins_the_bundle_flow_keeps_source(tmp_path):
    """Without a GPU here, collect's builds still embed compiled cubins (what a runtime-only server needs);
    the bundle flow's libraries keep TVM's CUDA source (its device script serves cubins by digest)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    embedded = _stored_format(_matmul_builds(tmp_path / "a", device_binaries=False))
    assert embedded.startswith("cubin True "), embedded
    assert _stored_format(_matmul_builds(tmp_path / "b", device_binaries=True)).startswith("cuda False ")


def _collect(args: list[str]):
    from cwm_bench.cli import main

    return CliRunner().invoke(main, ["collect", "--target", "cuda", *args])


def test_collect_target_cuda_on_two_gpu_servers_one_crashing_one_failing(tmp_path, monkeypatch):
    from cwm_bench.rows.store import DatasetStore
    from cwm_bench.validate import validate_dataset

    crashed, failed = tmp_path / "crashed-once", tmp_path / "failed-once"
    monkeypatch.setenv("FAKE_GPU_ABORT_ONCE", str(crashed))  # the servers' environment
    monkeypatch.setenv("FAKE_GPU_FAIL_ONCE", str(failed))
    out = tmp_path / "data"
    with LoopbackCluster(servers=2, key="fakegpu", server_argv=FAKE_SERVER, log_dir=str(tmp_path)) as cluster:
        rpc = ["--rpc-tracker", cluster.tracker, "--device-key", "fakegpu"]
        told = _collect(["--out", str(out), *rpc])
        assert told.exit_code == 1 and "did not tell its GPU's device_name" in told.output, told.output
        assert "--gpu h100|h200" in told.output and "--device-hardware" in told.output
        assert "Traceback" not in told.output and not out.exists()

        # the preset describes the GPU the servers cannot describe (rows get its hw_id; flushes of 2 x 50 MiB)
        result = _collect(["--workloads", "mini:matmul_64x64x64", "--per-task", "8", "--batch-size", "4",
                           "--rounds", "2", "--repeats", "2", "--check-fraction", "1", "--out", str(out),
                           "--gpu", "h100", "--no-progress", *rpc])
    assert result.exit_code == 0, result.output
    assert crashed.exists() and failed.exists(), "both faults happened"
    rows = DatasetStore(str(out), readonly=True).read("records").to_pylist()
    assert "rows record the --gpu h100 preset" in result.output
    h100 = GPU_PRESETS["h100"]
    assert len(rows) == 8 and {r["hw_id"] for r in rows} == {h100.hw_id} and {r["hw_kind"] for r in rows} == {"gpu"}
    statuses = Counter(r["status"] for r in rows)
    assert statuses["run_error"] == 1, statuses  # the CUDA error: that kernel's row; the crash: measured elsewhere
    assert "CUDAError" in next(r["error"] for r in rows if r["status"] == "run_error")
    assert statuses["ok"] + statuses["build_error"] == 7 and statuses["ok"] >= 3
    measured = [r for r in rows if r["status"] == "ok"]
    assert all(r["measured_by"].startswith("rpc:fakegpu@127.0.0.1:") for r in measured)
    assert all(min(r["latencies_s"]) >= 20e-6 for r in measured), "timed on the server's (spinning) kernels"
    assert not any("lost on" in (r["error"] or "") for r in rows), "the aborted candidate was measured again"
    # the fake's kernels write nothing, so this shows the check runs on the server, not that it catches errors
    assert all(r["checked"] for r in measured), "outputs compared with dlight's schedule, on the server"
    protocol = json.loads(measured[0]["protocol"])
    assert protocol["cache_flush"] is True
    assert Counter(r["origin"] for r in rows)["evolutionary"] >= 1
    problems, _ = validate_dataset(str(out), replay_count=2)
    assert problems == []


def _runtime_only_env(tmp_path) -> dict[str, str]:
    """A server environment with TVM's runtime only (the copy the bundle flow ships: no compiler)."""
    import tvm_ffi.libinfo

    sys.path.insert(0, TOOLS)
    try:
        import make_runtime_bundle
    finally:
        sys.path.remove(TOOLS)
    make_runtime_bundle.make_runtime(str(tmp_path / "runtime"), ffi_from_installed=True)
    return {"TVM_USE_RUNTIME_LIB": "1", "PYTHONPATH": str(tmp_path / "runtime" / "site"),
            "FAKE_GPU_FFI_INCLUDE": tvm_ffi.libinfo.find_include_path()}


@pytest.mark.parametrize("server_tvm", ["full", "runtime-only"])
def test_outputs_that_differ_on_a_gpu_server_are_wrong_result_rows(tmp_path, monkeypatch, server_tvm):
    """The output check runs on the server: kernels whose outputs differ from the reference's are rows
    with status wrong_result (the fake writes launch-dependent values with FAKE_GPU_WRONG). The server
    runs the full TVM, or the runtime-only copy (no compiler in the server: libraries arrive built)."""
    from cwm_bench.build.builder import ParallelBuilder
    from cwm_bench.candidates.generate import CandidateGenerator
    from cwm_bench.cuda.build import reference_module
    from cwm_bench.hardware import target_for
    from cwm_bench.measure.protocol import MeasureProtocol
    from cwm_bench.measure.rpc import RpcConfig
    from cwm_bench.measure.rpc_runner import RpcRunner
    from cwm_bench.measure.runner import MeasureItem
    from cwm_bench.workload.suites import select_workloads

    monkeypatch.setenv("FAKE_GPU_WRONG", "1")
    (w,) = select_workloads("mini:matmul_64x64x64", "cuda")
    target = target_for(FAKE_GPU)
    candidates = CandidateGenerator(w, target, seed=3).random(3, max_attempts_per_candidate=64)
    builder = ParallelBuilder(str(target), 1)
    builds = builder.build([("ref", reference_module(w.mod, target))] + [(c.program_hash, c.mod) for c in candidates])
    ref, built = builds[0], [b for b in builds[1:] if b.status == "ok"]
    assert ref.status == "ok" and built, [b.error for b in builds]
    specs = [(tuple(a.shape), a.dtype) for a in w.args]
    items = [MeasureItem(b.key, b.lib_path, w.workload_id, specs, reference_path=ref.lib_path) for b in built]
    protocol = MeasureProtocol(rounds=1, repeats_per_round=1, cache_flush=True, check_fraction=1.0)
    server_env = _runtime_only_env(tmp_path) if server_tvm == "runtime-only" else {}
    with LoopbackCluster(servers=1, key="wrong", server_argv=FAKE_SERVER, server_env=server_env,
                         log_dir=str(tmp_path)) as cluster:
        runner = RpcRunner(protocol, RpcConfig(cluster.tracker, "wrong", connect_timeout_s=30), "cuda",
                           expected_gpu=(FAKE_GPU.name, FAKE_GPU.arch), flush_bytes=2**21)
        try:
            results = runner.measure(items)
        finally:
            runner.close()
            builder.close()
    loaded = "loaded=False" if server_tvm == "runtime-only" else "loaded=True"
    assert f"TVM compiler {loaded}" in (tmp_path / "server0.log").read_text()
    assert {r.status for r in results} == {"wrong_result"}, [(r.status, r.error) for r in results]
    assert all("output differs" in r.error and r.checked for r in results)


def test_gpu_server_refusals_are_one_line(tmp_path):
    cpu = tmp_path / "cpu.json"
    cpu.write_text(HardwareDescriptor(kind="cpu", name="Some CPU", arch="znver4", num_cores=2).to_json())
    tracker = ["--rpc-tracker", f"127.0.0.1:{free_port()}", "--device-key", "k"]
    result = _collect(["--out", str(tmp_path / "x"), "--device-hardware", str(cpu), *tracker])
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    result = _collect(["--out", str(tmp_path / "x"), *tracker])
    assert result.exit_code == 1 and "cannot reach the RPC tracker" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with LoopbackCluster(servers=1, key="k", server_argv=FAKE_SERVER) as cluster:
        result = _collect(["--out", str(tmp_path / "x"), "--device-hardware", str(cpu),
                           "--rpc-tracker", cluster.tracker, "--device-key", "k"])
        assert result.exit_code == 2 and "describes a CPU" in result.output, result.output
        result = _collect(["--out", str(tmp_path / "x"), "--device-hardware", str(bad),
                           "--rpc-tracker", cluster.tracker, "--device-key", "k"])
        assert result.exit_code == 2 and "is not a hardware descriptor" in result.output, result.output
        result = _collect(["--out", str(tmp_path / "x"), "--gpu", "h100", "--device-hardware", str(cpu),
                           "--rpc-tracker", cluster.tracker, "--device-key", "k"])
        assert result.exit_code == 2 and "--gpu PRESET" in result.output, result.output
        from cwm_bench.cli import main

        rpc = ["--rpc-tracker", cluster.tracker, "--device-key", "k"]
        described = CliRunner().invoke(main, ["hardware", "--gpu", *rpc])
        assert described.exit_code == 1 and "did not tell its GPU's" in described.output
        described = CliRunner().invoke(main, ["hardware", *rpc])
        assert described.exit_code == 2 and "add --gpu" in described.output
    assert not (tmp_path / "x").exists()


def test_an_rpc_gpu_is_described_like_a_local_one(tmp_path, monkeypatch):
    from cwm_bench.cuda.local import local_gpu
    from cwm_bench.cuda.remote import rpc_gpu
    from cwm_bench.measure.rpc import RpcConfig

    monkeypatch.setenv("CWM_TEST_GPU_LOG", str(tmp_path / "log.jsonl"))
    remote, why = rpc_gpu(RpcConfig("127.0.0.1:1", "h100"), handler="tests.cuda.scripted_gpu:handle")
    local, _ = local_gpu(handler="tests.cuda.scripted_gpu:handle")
    assert why == "" and remote.hw_id == local.hw_id, "one GPU, one hw_id, however it is reached"
    assert remote.details["l2_cache_size_bytes"] == 50 * 2**20 and "uuid" not in remote.details


def test_a_server_with_another_gpu_stops_the_run():
    from cwm_bench.measure.rpc import RpcConfig, TrackerError
    from cwm_bench.measure.rpc_runner import RpcRunner

    runner = RpcRunner.__new__(RpcRunner)  # the identity check alone, no tracker
    runner.config, runner.expected_cpu = RpcConfig("127.0.0.1:1", "h100"), None
    runner.expected_gpu = ("NVIDIA H100 80GB HBM3", "sm_90")

    class Lane:
        server, server_cpu = "10.0.0.7:9090", None
        server_gpu = {"exist": True, "name": "NVIDIA H100 80GB HBM3", "compute_version": "9.0"}

    runner._check_device(Lane())  # the same GPU: fine
    Lane.server_gpu = {"exist": True, "name": None, "compute_version": None}
    runner._check_device(Lane())  # a server that does not tell: trusted (rows use the descriptor given)
    Lane.server_gpu = {"exist": True, "name": "NVIDIA A100-SXM4-80GB", "compute_version": "8.0"}
    with pytest.raises(TrackerError, match="has an NVIDIA A100-SXM4-80GB \\(sm_80\\).*own key"):
        runner._check_device(Lane())
    Lane.server_gpu = {"exist": False}
    with pytest.raises(TrackerError, match="has no CUDA device"):
        runner._check_device(Lane())


def test_a_gpu_preset_is_checked_against_the_gpu_a_server_describes(monkeypatch):
    import click

    from cwm_bench.cli import collection
    from cwm_bench.cuda import remote
    from cwm_bench.cuda.ingest import hardware_from_device
    from tests.cuda.scripted_gpu import H100

    a100 = hardware_from_device({"tvm_device": {**H100, "device_name": "NVIDIA A100-SXM4-80GB",
                                                "compute_version": "8.0", "multi_processor_count": 108}})
    monkeypatch.setattr(remote, "rpc_gpu", lambda rpc: (a100, ""))
    assert collection._gpu_for(object(), "auto") is a100
    with pytest.raises(click.UsageError, match="is an NVIDIA A100-SXM4-80GB \\(sm_80\\), not --gpu h100"):
        collection._gpu_for(object(), "h100")
    h100 = hardware_from_device({"tvm_device": H100})
    monkeypatch.setattr(remote, "rpc_gpu", lambda rpc: (h100, ""))
    assert collection._gpu_for(object(), "h100") is h100, "the device's own description wins over the preset's"
    assert h100.hw_id == GPU_PRESETS["h100"].hw_id
