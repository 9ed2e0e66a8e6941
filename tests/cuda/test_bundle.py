from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from cwm_bench.cuda import MANIFEST, PENDING, WORKLOADS
from cwm_bench.hardware import GPU_PRESETS, target_for
from cwm_bench.rows.schema import FEATURE_DIM, RECORDS


def test_gpu_target_has_what_metaschedule_needs():
    target = target_for(GPU_PRESETS["h100"])
    assert target.kind.name == "cuda" and target.host.kind.name == "llvm"
    attrs = dict(target.attrs)
    assert attrs["arch"] == "sm_90" and attrs["max_threads_per_block"] == 1024
    assert attrs["max_shared_memory_per_block"] == 49152 and attrs["registers_per_block"] == 65536
    assert GPU_PRESETS["h100"].hw_id != GPU_PRESETS["h200"].hw_id


def test_bundle_manifest_is_complete(cuda_bundle):
    with open(os.path.join(cuda_bundle, MANIFEST)) as handle:
        manifest = json.load(handle)
    assert manifest["format"] == 1 and manifest["target"]["kind"] == "cuda"
    assert manifest["gpu"]["arch"] == "sm_90"
    (wid, spec), = manifest["workloads"].items()
    assert spec["arg_specs"] == [[[64, 64], "float32"]] * 3
    assert spec["reference"] and os.path.getsize(os.path.join(cuda_bundle, spec["reference"])) > 0
    candidates = manifest["candidates"]
    assert len(candidates) == 3
    for c in candidates:
        assert {"key", "workload_id", "program_hash", "trace_json", "origin", "seed", "design_space",
                "lib", "build_status"} <= set(c)
        assert c["workload_id"] == wid and c["origin"] == "random" and c["build_status"] == "ok"
        assert os.path.getsize(os.path.join(cuda_bundle, c["lib"])) > 1000
        json.loads(c["trace_json"])
        # the kernel was compiled here: a cubin (an ELF file) per device module, named by source digest
        assert len(c["device_binaries"]) == 1
        with open(os.path.join(cuda_bundle, "kernels", c["device_binaries"][0] + ".cubin"), "rb") as handle:
            assert handle.read(4) == b"\x7fELF"
    assert spec["reference_device_binaries"] and all(
        os.path.exists(os.path.join(cuda_bundle, "kernels", d + ".cubin")) for d in spec["reference_device_binaries"])
    pending = pq.read_table(os.path.join(cuda_bundle, PENDING))
    assert pending.schema.equals(RECORDS, check_metadata=False)
    rows = pending.to_pylist()
    assert sorted(r["record_id"] for r in rows) == sorted(c["key"] for c in candidates)
    assert all(r["latency_s"] is None and r["latencies_s"] == [] for r in rows)
    assert all(len(r["features"]) >= 1 and len(r["features"][0]) == FEATURE_DIM for r in rows)
    assert pq.read_table(os.path.join(cuda_bundle, WORKLOADS)).num_rows == 1


def test_measure_script_reads_the_manifest(cuda_bundle, tools_on_path):
    import cuda_measure

    args = cuda_measure.parse_args([cuda_bundle, "--out", "/tmp/x", "--rounds", "2", "--limit", "2"])
    assert args.rounds == 2 and args.l2_flush and args.repeats == 3 and args.bundles == [cuda_bundle]
    assert not cuda_measure.parse_args([cuda_bundle, "--no-l2-flush"]).l2_flush
    manifest = cuda_measure.read_manifest(cuda_bundle)
    groups = cuda_measure.plan(manifest, args.limit)
    assert [len(v) for v in groups.values()] == [2]
    assert len(next(iter(cuda_measure.plan(manifest).values()))) == 3


def test_slow_kernels_take_fewer_repeats(tools_on_path):
    import cuda_measure

    session = cuda_measure.Session(cuda_measure.parse_args(["b", "--rounds", "5", "--repeats", "3",
                                                            "--kernel-budget-s", "0.5"]), flush_bytes=0)
    assert session.repeats_for(1e-5) == 3  # fast: every repeat
    assert session.repeats_for(0.05) == 2  # 5 rounds x 2 x 50 ms = the 0.5 s budget
    assert session.repeats_for(2.0) == 1  # never below one timing per round


def test_old_bundles_without_device_binaries_are_refused(cuda_bundle, tools_on_path, tmp_path):
    import shutil

    import cuda_measure

    old = tmp_path / "old"
    shutil.copytree(cuda_bundle, old)
    manifest = json.loads((old / MANIFEST).read_text())
    for c in manifest["candidates"]:
        del c["device_binaries"]
    (old / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match="device binaries"):
        cuda_measure.read_manifest(str(old))


def test_collect_cuda_explains_the_two_step_flow(tmp_path):
    from click.testing import CliRunner

    from cwm_bench.cli import main

    result = CliRunner().invoke(main, ["collect", "--target", "cuda", "--out", str(tmp_path / "d")])
    assert result.exit_code != 0 and "build-cuda" in result.output and "ingest-cuda" in result.output


@pytest.mark.parametrize("shard", ["2/2", "x/2", "1", "-1/2"])
def test_build_cuda_refuses_a_bad_shard(shard, tmp_path):
    from click.testing import CliRunner

    from cwm_bench.cli import main

    result = CliRunner().invoke(main, ["build-cuda", "--workloads", "mini", "--shard", shard,
                                       "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--shard" in result.output and not (tmp_path / "b").exists()
