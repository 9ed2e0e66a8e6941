from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from cwm_bench.cuda import MANIFEST
from cwm_bench.cuda.ingest import hardware_from_device, ingest_cuda
from cwm_bench.validate import validate_dataset

# FIXTURE, not a measurement: the shape of what tools/cuda_measure.py writes on an H100.
FAKE_DEVICE = {
    "collected_at": "2026-11-26T00:00:00Z",
    "nvidia_smi": {"name": "NVIDIA H100 80GB HBM3", "driver_version": "580.159.04", "clocks.max.sm": "1980"},
    "tvm_device": {"device_name": "NVIDIA H100 80GB HBM3", "compute_version": "9.0", "multi_processor_count": 132,
                   "l2_cache_size_bytes": 52428800, "max_shared_memory_per_block": 49152, "warp_size": 32,
                   "max_threads_per_block": 1024, "total_global_memory": 85520809984,
                   "max_clock_rate_khz": 1980000, "driver_version": 13000, "tvm_version": "0.27.0"},
}


def _fake_results(bundle: str) -> dict:
    """FIXTURE: one ok, one run_error, one timeout (made-up latencies)."""
    with open(os.path.join(bundle, MANIFEST)) as handle:
        keys = [c["key"] for c in json.load(handle)["candidates"]]
    return {"format": 1, "protocol": {"rounds": 2, "repeats": 3, "device": "cuda"}, "results": {
        keys[0]: {"status": "ok", "latencies_s": [1.0e-5, 1.2e-5, 1.1e-5], "error": None, "checked": True},
        keys[1]: {"status": "run_error", "latencies_s": [], "error": "load: CUDA error", "checked": False},
        keys[2]: {"status": "timeout", "latencies_s": [], "error": "time took over 30 s", "checked": False}}}


def test_device_json_becomes_a_gpu_descriptor():
    hw = hardware_from_device(FAKE_DEVICE)
    assert (hw.kind, hw.arch, hw.num_cores, hw.name) == ("gpu", "sm_90", 132, "NVIDIA H100 80GB HBM3")
    with pytest.raises(ValueError):
        hardware_from_device({"tvm_device": {"error": "libcuda.so.1 missing"}})


def test_ingest_fake_results_into_a_valid_dataset(cuda_bundle, tmp_path):
    results, device = tmp_path / "results.json", tmp_path / "device.json"
    results.write_text(json.dumps(_fake_results(cuda_bundle)))
    device.write_text(json.dumps(FAKE_DEVICE))
    out = tmp_path / "data"
    report = ingest_cuda(cuda_bundle, str(results), str(device), str(out))
    assert report.rows == 3 and report.by_status == {"ok": 1, "run_error": 1, "timeout": 1}
    rows = pq.read_table(str(out / "records")).to_pylist()
    ok = next(r for r in rows if r["status"] == "ok")
    assert ok["latency_s"] == pytest.approx(1.1e-5) and ok["checked"] and ok["hw_num_cores"] == 132
    assert {r["hw_id"] for r in rows} == {hardware_from_device(FAKE_DEVICE).hw_id}
    problems, _ = validate_dataset(str(out), replay_count=2)
    assert not problems, [str(p) for p in problems]
    assert ingest_cuda(cuda_bundle, str(results), str(device), str(out)).rows == 0  # idempotent


def test_ingest_refuses_another_architecture(cuda_bundle, tmp_path):
    device = dict(FAKE_DEVICE, tvm_device=dict(FAKE_DEVICE["tvm_device"], compute_version="8.0"))
    (tmp_path / "d.json").write_text(json.dumps(device))
    (tmp_path / "r.json").write_text(json.dumps(_fake_results(cuda_bundle)))
    with pytest.raises(ValueError, match="sm_80"):
        ingest_cuda(cuda_bundle, str(tmp_path / "r.json"), str(tmp_path / "d.json"), str(tmp_path / "data"))


def test_ingest_cli_takes_several_bundles_and_names_the_measurer(cuda_bundle, tmp_path):
    from click.testing import CliRunner

    from cwm_bench.cli import main

    results, device = tmp_path / "results.json", tmp_path / "device.json"
    results.write_text(json.dumps(_fake_results(cuda_bundle)))
    device.write_text(json.dumps(FAKE_DEVICE))
    out = tmp_path / "data"
    args = ["ingest-cuda", cuda_bundle, cuda_bundle, "--results", str(results), "--device", str(device),
            "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "3 records added" in result.output and "0 records added" in result.output  # second time: nothing new
    rows = pq.read_table(str(out / "records")).to_pylist()
    assert len(rows) == 3 and {r["measured_by"] for r in rows} == {"cuda_measure"}
    other = dict(FAKE_DEVICE, tvm_device=dict(FAKE_DEVICE["tvm_device"], compute_version="8.6"))
    device.write_text(json.dumps(other))
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "sm_86" in result.output and "Traceback" not in result.output


def test_ingest_keys_rows_by_hardware_and_checks_the_run(cuda_bundle, tmp_path):
    import datetime as dt

    results = _fake_results(cuda_bundle)
    name = "/".join(os.path.normpath(os.path.abspath(cuda_bundle)).split(os.sep)[-2:])
    results.update(bundles=["other-build/bundle-000"], finished_at="2026-11-27T05:58:00Z")
    (tmp_path / "r.json").write_text(json.dumps(results))
    (tmp_path / "d.json").write_text(json.dumps(FAKE_DEVICE))
    out = str(tmp_path / "data")
    with pytest.raises(ValueError, match="did not measure bundle"):
        ingest_cuda(cuda_bundle, str(tmp_path / "r.json"), str(tmp_path / "d.json"), out)
    results["bundles"].append(name)
    first = next(iter(results["results"]))
    results["results"][first] = {"status": "ok", "latencies_s": [], "error": None, "checked": True}
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert ingest_cuda(cuda_bundle, str(tmp_path / "r.json"), str(tmp_path / "d.json"), out).rows == 3
    rows = pq.read_table(os.path.join(out, "records")).to_pylist()
    assert {r["measured_at"] for r in rows} == {dt.datetime(2026, 11, 27, 5, 58, tzinfo=dt.UTC)}  # the run's time
    assert next(r for r in rows if r["record_id"] == first)["error"] == "no timings recorded"
    # the same programs timed on another GPU are new rows, not duplicates
    other = dict(FAKE_DEVICE, tvm_device=dict(FAKE_DEVICE["tvm_device"], device_name="NVIDIA H200"))
    (tmp_path / "d2.json").write_text(json.dumps(other))
    assert ingest_cuda(cuda_bundle, str(tmp_path / "r.json"), str(tmp_path / "d2.json"), out).rows == 3


def _all_ok(bundle: str, base: float) -> dict:
    """FIXTURE: every built candidate ok, made-up latencies that differ."""
    with open(os.path.join(bundle, MANIFEST)) as handle:
        keys = [c["key"] for c in json.load(handle)["candidates"] if c["lib"]]
    return {"format": 1, "protocol": {"rounds": 2, "repeats": 3, "device": "cuda"}, "results": {
        k: {"status": "ok", "latencies_s": [base * (i + 1)] * 3, "error": None, "checked": False}
        for i, k in enumerate(keys)}}


def test_build_cuda_from_an_ingested_folder_makes_an_evolutionary_second_round(cuda_bundle, tmp_path):
    from cwm_bench.cuda.build import build_cuda_bundle
    from cwm_bench.hardware import GPU_PRESETS
    from cwm_bench.workload.suites import select_workloads

    device = tmp_path / "device.json"
    device.write_text(json.dumps(FAKE_DEVICE))
    data = tmp_path / "data"
    first = tmp_path / "r1.json"
    first.write_text(json.dumps(_all_ok(cuda_bundle, 1e-5)))
    ingest_cuda(cuda_bundle, str(first), str(device), str(data))
    with pytest.raises(ValueError, match="no measured sm_80"):
        build_cuda_bundle([], GPU_PRESETS["h100"].__class__(**{**GPU_PRESETS["h100"].__dict__, "arch": "sm_80"}),
                          str(tmp_path / "none"), 3, from_dir=str(data))
    workloads = select_workloads("mini:matmul_64x64x64", "cuda")
    bundles = build_cuda_bundle(workloads, GPU_PRESETS["h100"], str(tmp_path / "round2"), per_task=3,
                                build_workers=1, log=lambda text: None, from_dir=str(data))
    manifest = json.loads(open(os.path.join(bundles[0], MANIFEST)).read())
    assert manifest["round"] == 2
    assert manifest["candidates"] and {c["origin"] for c in manifest["candidates"]} == {"evolutionary"}
    round1 = {r["program_hash"] for r in pq.read_table(str(data / "records")).to_pylist()}
    assert not round1 & {c["program_hash"] for c in manifest["candidates"]}, "programs of round 1 never again"
    second = tmp_path / "r2.json"
    second.write_text(json.dumps(_all_ok(bundles[0], 2e-5)))
    ingest_cuda(bundles[0], str(second), str(device), str(data))
    rows = pq.read_table(str(data / "records")).to_pylist()
    rounds = {json.loads(r["protocol"])["round"] for r in rows}
    assert rounds == {1, 2}
    assert validate_dataset(str(data), replay_count=2)[0] == []
