"""`validate` accepts a real dataset and names the file and row of every kind of damage."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cwm_bench.cli import main
from cwm_bench.validate import validate_dataset


@pytest.fixture
def copy(tmp_path, tiny_dataset):
    target = tmp_path / "copy"
    shutil.copytree(tiny_dataset, target)
    return target


def _first_shard(folder):
    return sorted((folder / "records").glob("*.parquet"))[0]


def test_valid_dataset(tiny_dataset):
    problems, summary = validate_dataset(tiny_dataset, replay_count=5)
    assert problems == [] and "12 records" in summary
    result = CliRunner().invoke(main, ["validate", tiny_dataset])
    assert result.exit_code == 0 and "ok" in result.output


def test_corrupt_file_is_named(copy):
    shard = _first_shard(copy)
    shard.write_bytes(shard.read_bytes()[:100])
    result = CliRunner().invoke(main, ["validate", str(copy)])
    assert result.exit_code == 1
    assert f"records/{shard.name}: not a readable Parquet file" in result.output
    assert "checksum differs" in result.output


def test_unknown_column_and_duplicate_rows(copy):
    shard = _first_shard(copy)
    table = pq.read_table(shard)
    pq.write_table(table.append_column("surprise", pa.array([1] * table.num_rows)), shard)
    problems, _ = validate_dataset(str(copy), replay_count=0)
    assert any(f"records/{shard.name}: unknown column(s) ['surprise']" in str(p) for p in problems)

    pq.write_table(table, shard)  # repair the first shard, then duplicate it
    shutil.copy(shard, copy / "records" / "part-zzzz-dup.parquet")
    problems, _ = validate_dataset(str(copy), replay_count=0)
    messages = [str(p) for p in problems]
    assert any("part-zzzz-dup.parquet row 0: duplicate record" in m for m in messages)
    assert any("not listed in manifest.json" in m for m in messages)


def test_trace_that_does_not_replay_is_named(copy):
    shard = _first_shard(copy)
    table = pq.read_table(shard)
    traces = table.column("trace_json").to_pylist()
    insts, decisions = json.loads(traces[0])
    insts[0][2] = ["no_such_block", "main"]  # GetSBlock of a block that does not exist
    traces[0] = json.dumps([insts, decisions])
    index = table.schema.get_field_index("trace_json")
    table = table.set_column(index, "trace_json", pa.array(traces))
    pq.write_table(table, shard, compression="zstd")
    CliRunner().invoke(main, ["validate", str(copy), "--rebuild-manifest", "--replay", "0"])
    problems, _ = validate_dataset(str(copy), replay_count=1000)
    assert [str(p) for p in problems] and all("row 0: trace does not replay" in str(p) for p in problems)


def test_a_release_validates_and_tampering_is_named(tmp_path, tiny_dataset):
    from cwm_bench.release import build_release

    release = tmp_path / "release"
    build_release(tiny_dataset, str(release), "org/tiny")
    problems, summary = validate_dataset(str(release), replay_count=5)
    assert problems == [] and "12 records" in summary
    shard = sorted((release / "data" / "records").glob("*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    result = CliRunner().invoke(main, ["validate", str(release)])
    assert result.exit_code == 1
    assert f"data/records/{shard.name}: sha256 does not match" in result.output


@pytest.mark.parametrize("version", [b"1", b"2"])
def test_schema_1_shards_read_with_null_measured_by(copy, version):
    """Shards written before `measured_by` existed stay valid and read as nulls; a schema-2 shard must have it."""
    from cwm_bench.rows.store import DatasetStore

    for shard in sorted((copy / "records").glob("*.parquet")):
        table = pq.read_table(shard)
        old = table.drop_columns(["measured_by"])
        meta = {**(table.schema.metadata or {}), b"cwm_bench.schema_version": version}
        pq.write_table(old.replace_schema_metadata(meta), shard)
    DatasetStore(str(copy)).write_manifest()
    problems, _ = validate_dataset(str(copy), replay_count=0)
    if version == b"1":
        assert problems == []
        column = DatasetStore(str(copy), readonly=True).read("records", ["record_id", "measured_by"])
        assert column.column("measured_by").null_count == column.num_rows > 0
    else:
        assert any("missing column(s) ['measured_by']" in str(p) for p in problems)
