"""Noise ceiling on hand-made tables with known answers (no TVM needed)."""

from __future__ import annotations

import datetime as dt
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cwm_bench.cli import main
from cwm_bench.noise import NOISE_SCHEMA, cv, noise_ceiling, noise_table, pairwise_agreement

WHEN = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


def records(rows: list[tuple], hw_id: str = "hw") -> pa.Table:
    """rows: (record_id, workload_id, latency_s or None for a failed run[, latencies_s])."""
    out = []
    for rid, wid, latency, *rest in rows:
        latencies = rest[0] if rest else ([latency] * 3 if latency is not None else [])
        out.append({"record_id": rid, "workload_id": wid, "hw_id": hw_id,
                    "status": "ok" if latency is not None else "run_error",
                    "latency_s": latency, "latencies_s": latencies, "measured_at": WHEN})
    return pa.Table.from_pylist(out)


def test_identical_runs_agree_fully():
    t = records([("a", "w", 1.0), ("b", "w", 2.0), ("c", "w", 3.0)])
    result = noise_ceiling(t, t)
    assert result["agreement"] == 1.0 and result["pairs"] == 3 and result["programs"] == 3
    assert result["median_rel_change"] == 0.0 and result["median_ratio"] == 1.0
    assert result["median_cv_original"] == 0.0 and result["per_task"]["w"]["agreement"] == 1.0


def test_one_swapped_pair_of_three_programs():
    a = records([("a", "w", 1.0), ("b", "w", 2.0), ("c", "w", 3.0)])
    b = records([("a", "w", 2.0), ("b", "w", 1.0), ("c", "w", 3.0)])
    result = noise_ceiling(a, b)
    assert result["pairs"] == 3 and result["agreeing_pairs"] == 2
    assert result["agreement"] == pytest.approx(2 / 3)
    assert result["median_rel_change"] == pytest.approx(0.5)  # changes 1.0, 0.5, 0.0


def test_ties_in_either_run_are_skipped():
    assert pairwise_agreement([1.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == (2, 2)  # tied in the first run
    assert pairwise_agreement([1.0, 2.0, 3.0], [5.0, 5.0, 1.0]) == (0, 2)  # tied in the second run
    assert pairwise_agreement([1.0], [2.0]) == (0, 0)
    t = records([("a", "w", 1.0), ("b", "w", 1.0)])
    assert noise_ceiling(t, t)["agreement"] is None  # nothing to compare: undefined, not 0 or 1


def test_pooled_and_task_mean_agreement():
    a = records([("a", "w1", 1.0), ("b", "w1", 2.0), ("c", "w1", 3.0), ("d", "w2", 1.0), ("e", "w2", 2.0)])
    b = records([("a", "w1", 2.0), ("b", "w1", 1.0), ("c", "w1", 3.0), ("d", "w2", 1.0), ("e", "w2", 2.0)])
    result = noise_ceiling(a, b)
    assert result["tasks"] == 2 and result["pairs"] == 4  # pairs never cross tasks (3 + 1, not 10)
    assert result["agreement"] == pytest.approx(3 / 4)
    assert result["agreement_task_mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert result["per_task"]["w1"]["pairs"] == 3 and result["per_task"]["w2"]["agreement"] == 1.0


def test_only_records_ok_in_both_runs_are_joined():
    a = records([("a", "w", 1.0), ("b", "w", 2.0), ("c", "w", None), ("only-a", "w", 4.0)])
    b = records([("a", "w", 1.0), ("b", "w", None), ("c", "w", 3.0), ("only-b", "w", 4.0)])
    result = noise_ceiling(a, b)
    assert result["programs"] == 1 and result["pairs"] == 0
    assert noise_table(a, b).column("record_id").to_pylist() == ["a"]


def test_coefficient_of_variation():
    assert cv([1.0, 1.0, 1.0]) == 0.0
    assert cv([1.0, 2.0, 3.0]) == pytest.approx(0.5)  # sample std 1, mean 2
    assert cv([1.0]) is None and cv([]) is None
    a = records([("a", "w", 2.0, [1.0, 2.0, 3.0]), ("b", "w", 4.0, [4.0])])
    assert noise_ceiling(a, a)["median_cv_original"] == pytest.approx(0.5)  # a record with 1 timing has none


def test_noise_table_rows():
    a = records([("b", "w", 2.0), ("a", "w", 1.0, [1.0, 2.0, 3.0])], hw_id="old")
    b = records([("a", "w", 1.5, [1.0, 1.5, 2.0]), ("b", "w", 2.5)], hw_id="new")
    table = noise_table(a, b)
    assert table.schema.equals(NOISE_SCHEMA)
    rows = table.to_pylist()
    assert [r["record_id"] for r in rows] == ["a", "b"]
    assert rows[0]["hw_id"] == "new" and rows[0]["original_latency_s"] == 1.0 and rows[0]["latency_s"] == 1.5
    assert rows[0]["latencies_s"] == [1.0, 1.5, 2.0] and rows[0]["cv_original"] == pytest.approx(0.5)
    assert rows[0]["measured_at"] == WHEN


def test_a_record_ok_on_two_hardware_ids_is_refused():
    t = pa.concat_tables([records([("a", "w", 1.0)], "hw1"), records([("a", "w", 1.0)], "hw2")])
    with pytest.raises(ValueError, match="more than one hardware"):
        noise_ceiling(t, records([("a", "w", 1.0)]))


def _folder(root, table: pa.Table) -> str:
    """The smallest collection folder `read_table` accepts: a manifest and one records shard."""
    os.makedirs(os.path.join(root, "records"))
    with open(os.path.join(root, "manifest.json"), "w") as handle:
        json.dump({}, handle)
    pq.write_table(table, os.path.join(root, "records", "part-0.parquet"))
    return str(root)


def test_cli_prints_per_task_table_and_writes_json(tmp_path):
    a = _folder(tmp_path / "a", records([("a", "w1", 1.0), ("b", "w1", 2.0), ("c", "w1", 3.0)]))
    b = _folder(tmp_path / "b", records([("a", "w1", 2.0), ("b", "w1", 1.0), ("c", "w1", 3.0)]))
    out = tmp_path / "noise.json"
    result = CliRunner().invoke(main, ["noise", a, b, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "w1" in result.output and "0.667" in result.output
    saved = json.loads(out.read_text())
    assert saved["agreement"] == pytest.approx(2 / 3) and saved["per_task"]["w1"]["programs"] == 3
    empty = _folder(tmp_path / "c", records([("z", "w1", 1.0)]))
    nothing = CliRunner().invoke(main, ["noise", a, empty])
    assert nothing.exit_code == 1 and "no record is ok in both" in nothing.output


def test_cli_stores_the_noise_table_for_release(tmp_path):
    from cwm_bench.rows.reader import read_table

    a = _folder(tmp_path / "a", records([("a", "w1", 1.0), ("b", "w1", 2.0), ("c", "w1", None)]))
    b = _folder(tmp_path / "b", records([("a", "w1", 1.5), ("b", "w1", 2.5), ("c", "w1", 3.0)]))
    result = CliRunner().invoke(main, ["noise", a, b, "--into", a])
    assert result.exit_code == 0, result.output
    stored = read_table(a, "noise")
    assert sorted(stored.column("record_id").to_pylist()) == ["a", "b"]  # ok in both runs only
    assert stored.column("original_latency_s").to_pylist() == [1.0, 2.0]
