"""`collect --target cuda` on a machine with a GPU: the pipeline with a scripted GPU worker (builds,
references and the search are real; only the device's answers are scripted), and the refusal here."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

from cwm_bench.collect import CollectConfig, Collector
from cwm_bench.cuda.local import local_gpu
from cwm_bench.measure.protocol import MeasureProtocol
from cwm_bench.rows.store import DatasetStore
from cwm_bench.workload.suites import select_workloads
from tests.cuda.conftest import has_gpu, needs_nvcc

SCRIPTED = "tests.cuda.scripted_gpu:handle"


def test_local_gpu_is_described_like_the_bundle_flow(tmp_path, monkeypatch):
    from cwm_bench.cuda.ingest import hardware_from_device
    from tests.cuda.scripted_gpu import H100

    monkeypatch.setenv("CWM_TEST_GPU_LOG", str(tmp_path / "log.jsonl"))
    found, why = local_gpu(handler=SCRIPTED)
    assert why == "" and found.kind == "gpu" and found.arch == "sm_90" and found.num_cores == 132
    assert found.hw_id == hardware_from_device({"tvm_device": H100}).hw_id, "same GPU, same hw_id as ingest-cuda"


@needs_nvcc
def test_local_gpu_collection_with_a_scripted_gpu(tmp_path, monkeypatch):
    log, marker = tmp_path / "log.jsonl", tmp_path / "failed-once"
    monkeypatch.setenv("CWM_TEST_GPU_LOG", str(log))
    monkeypatch.setenv("CWM_TEST_GPU_FAIL", str(marker))
    gpu, _ = local_gpu(handler=SCRIPTED)
    protocol = MeasureProtocol(rounds=1, repeats_per_round=2, cache_flush=True, check_fraction=1.0)
    config = CollectConfig(per_task=8, batch_size=4, protocol=protocol, overlap=True)
    workloads = select_workloads("mini:matmul_64x64x64", "cuda")
    with Collector(gpu, str(tmp_path / "data"), config, log=lambda s: None, measure_handler=SCRIPTED) as c:
        c.run(workloads)
    table = DatasetStore(str(tmp_path / "data"), readonly=True).read("records")
    rows = table.to_pylist()
    assert len(rows) == 8 and {r["hw_kind"] for r in rows} == {"gpu"} and {r["hw_id"] for r in rows} == {gpu.hw_id}
    statuses = Counter(r["status"] for r in rows)
    assert statuses["run_error"] == 1 and "CUDAError" in next(r["error"] for r in rows if r["status"] == "run_error")
    assert statuses["ok"] + statuses["build_error"] == 7
    assert Counter(r["origin"] for r in rows)["evolutionary"] >= 1, "evolutionary GPU candidates"
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    timed = [r for r in requests if r["op"] == "time"]
    assert timed and all(r["device"] == "cuda" and r["cache_flush"] and r["flush_bytes"] == 2 * 50 * 2**20
                         for r in timed), "L2 flush of twice the L2 size on every timing"
    assert len({r["pid"] for r in requests if r["op"] != "info"}) >= 2, "a CUDA error replaces the worker"
    references = [r for r in requests if r["op"] == "reference"]
    assert references and all(r["reference_path"] for r in references), "outputs checked against dlight's schedule"
    assert any(r["checked"] for r in rows if r["status"] == "ok")


def test_collect_target_cuda_without_a_gpu_names_the_bundle_flow(tmp_path):
    if has_gpu():
        return  # this machine can collect for real
    result = subprocess.run([sys.executable, "-m", "cwm_bench.cli", "collect", "--target", "cuda", "--out",
                             str(tmp_path / "d")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "no CUDA GPU on this machine" in result.stderr and "build-cuda" in result.stderr


def test_refusals_are_one_line_and_write_nothing(tmp_path):
    import dataclasses
    import os

    import pytest
    from click.testing import CliRunner

    from cwm_bench.cli import main
    from cwm_bench.hardware import GPU_PRESETS

    no_l2 = dataclasses.replace(GPU_PRESETS["h100"], details={k: v for k, v in GPU_PRESETS["h100"].details.items()
                                                             if k != "l2_cache_size_bytes"})
    with pytest.raises(ValueError, match="L2 size is unknown"):
        Collector(no_l2, str(tmp_path / "gpu"), CollectConfig(protocol=MeasureProtocol(cache_flush=True)))
    assert not os.path.exists(tmp_path / "gpu")
    result = CliRunner().invoke(main, ["collect", "--target", "cuda", "--rpc-tracker", "127.0.0.1:1",
                                       "--device-key", "k", "--out", str(tmp_path / "rpc")])
    assert result.exit_code == 1 and "cannot reach the RPC tracker" in result.output  # GPU servers: asked first
    assert not os.path.exists(tmp_path / "rpc")
