"""Atomic shards, manifest, resume bookkeeping, and the readers users will use."""

from __future__ import annotations

import json
import os

import pyarrow.dataset as pads

from cwm_bench.rows.schema import RECORDS, STATUSES
from cwm_bench.rows.store import DatasetStore


def test_collected_folder_reads_with_pyarrow_and_datasets(tiny_dataset):
    import datasets

    table = pads.dataset(os.path.join(tiny_dataset, "records"), format="parquet").to_table()
    assert table.num_rows == 12 and table.schema.names == RECORDS.names
    assert set(table.column("status").to_pylist()) <= set(STATUSES)
    loaded = datasets.load_dataset("parquet", data_dir=os.path.join(tiny_dataset, "records"), split="train")
    assert len(loaded) == 12
    row = loaded[0]
    assert row["actions"][0]["kind"] == "GetSBlock" and len(row["features"][0]) == 164
    assert len(row["latencies_s"]) == 4  # 2 rounds x 2 repeats, all kept
    meta = table.schema.metadata
    assert json.loads(meta[b"cwm_bench.provenance"])["hardware"]["kind"] == "cpu"


def test_rows_name_the_hardware_and_versions(tiny_dataset, hardware):
    table = DatasetStore(tiny_dataset, readonly=True).read("records")
    assert set(table.column("hw_name").to_pylist()) == {hardware.name}
    assert set(table.column("hw_arch").to_pylist()) == {hardware.arch}
    assert set(table.column("tvm_version").to_pylist()) == {"0.27.0.post1"}
    assert all(table.column("checked").to_pylist())  # check_fraction=1.0 in the fixture
    origins = set(table.column("origin").to_pylist())
    assert origins == {"random", "evolutionary"}


def test_partial_files_are_removed_and_manifest_lists_every_shard(tmp_path, tiny_dataset):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    (copy / "records" / "part-x.parquet.partial").write_bytes(b"half a shard")
    store = DatasetStore(str(copy))
    assert not (copy / "records" / "part-x.parquet.partial").exists()
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["rows"]["records"] == 12
    assert len(manifest["shards"]["records"]) == len(store.shards("records"))
    progress = store.progress(store.read("records").column("hw_id")[0].as_py())
    assert sum(p.count for p in progress.values()) == 12


def test_compact_merges_shards_and_drops_duplicates(tmp_path, tiny_dataset):
    import shutil

    from click.testing import CliRunner

    from cwm_bench.cli import main
    from cwm_bench.validate import validate_dataset

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    first = sorted((copy / "records").glob("*.parquet"))[0]
    shutil.copy(first, copy / "records" / "part-zzzz-dup.parquet")  # as a crash mid-compaction leaves
    result = CliRunner().invoke(main, ["compact", str(copy)])
    assert result.exit_code == 0, result.output
    assert "records:" in result.output and "-> 1, 12 rows" in result.output
    assert len(list((copy / "records").glob("*.parquet"))) == 1
    assert validate_dataset(str(copy), replay_count=3)[0] == []


def test_one_writer_at_a_time(tmp_path):
    import pytest

    from cwm_bench.rows.store import DatasetBusyError

    first = DatasetStore(str(tmp_path / "d"))
    with pytest.raises(DatasetBusyError, match="another cwm-bench process is writing"):
        DatasetStore(str(tmp_path / "d"))
    DatasetStore(str(tmp_path / "d"), readonly=True).read("records")  # readers are never blocked
    first.close()
    DatasetStore(str(tmp_path / "d")).close()
