"""`cwm-bench remeasure`: sampling, protocol, a real re-measurement of `tiny_dataset`, bad traces."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from click.testing import CliRunner

from cwm_bench.cli import main
from cwm_bench.measure.protocol import MeasureProtocol
from cwm_bench.remeasure import select_records, source_protocol

TINY = ["--rounds", "1", "--repeats", "2", "--min-repeat-ms", "1", "--no-progress"]


def _rows() -> list[dict]:
    rows = [{"record_id": f"a{i}", "workload_id": "w1", "status": "ok"} for i in range(10)]
    rows += [{"record_id": f"e{i}", "workload_id": "w1", "status": "build_error"} for i in range(2)]
    rows += [{"record_id": f"b{i}", "workload_id": "w2", "status": "ok"} for i in range(3)]
    rows += [{"record_id": "c0", "workload_id": "w3", "status": "run_error"}]
    return rows


def _ids(rows: list[dict], task: str | None = None) -> set[str]:
    return {r["record_id"] for r in rows if task is None or r["workload_id"] == task}


def test_sample_is_per_task_and_seeded():
    rows = _rows()
    picked = select_records(rows, 0.3, seed=1)
    assert len(_ids(picked, "w1")) == 3 and len(_ids(picked, "w2")) == 1  # round(0.9) -> at least one
    assert not _ids(picked, "w3") and all(r["status"] == "ok" for r in picked)  # only ok records are sampled
    assert _ids(select_records(rows, 0.3, seed=1)) == _ids(picked)
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert _ids(select_records(shuffled, 0.3, seed=1)) == _ids(picked)  # shard order does not matter
    assert _ids(select_records([r for r in rows if r["workload_id"] == "w1"], 0.3, seed=1)) == _ids(picked, "w1")
    assert len({frozenset(_ids(select_records(rows, 0.3, seed=s), "w1")) for s in range(8)}) > 1


def test_full_fraction_takes_every_record_once():
    rows = _rows() + [{"record_id": "a0", "workload_id": "w1", "status": "ok"}]  # a0 on a second machine
    picked = select_records(rows)
    assert len(picked) == len(_rows()) and _ids(picked) == _ids(rows)
    assert [r["workload_id"] for r in picked] == sorted(r["workload_id"] for r in picked)  # grouped by task
    with pytest.raises(ValueError):
        select_records(rows, 0.0)


def test_protocol_is_the_sources_unless_overridden():
    theirs = MeasureProtocol(rounds=2, repeats_per_round=7, min_repeat_ms=3)
    stored = json.loads(theirs.to_json()) | {"a_field_of_a_later_version": 1}
    rows = [{"protocol": json.dumps(stored)}] * 2 + [{"protocol": MeasureProtocol().to_json()}]
    assert source_protocol(rows) == theirs
    overridden = source_protocol(rows, {"rounds": 1})
    assert overridden.rounds == 1 and overridden.repeats_per_round == 7
    assert source_protocol([{"protocol": json.dumps({"source": "metaschedule"})}]) == MeasureProtocol()


def test_cuda_target_is_refused_and_writes_nothing(tmp_path):
    result = CliRunner().invoke(main, ["remeasure", str(tmp_path), "--out", str(tmp_path / "out"), "--target", "cuda"])
    assert result.exit_code == 2 and "GPU machine" in result.output
    assert not (tmp_path / "out").exists()


def test_remeasure_tiny_dataset_then_noise(tiny_dataset, tmp_path, hardware):
    from cwm_bench.noise import run_agreement
    from cwm_bench.rows.reader import read_table
    from cwm_bench.validate import validate_dataset

    out = str(tmp_path / "again")
    result = CliRunner().invoke(main, ["remeasure", tiny_dataset, "--out", out, *TINY])
    assert result.exit_code == 0, result.output
    assert "0 failed replays" in result.output and '"rounds": 1' in result.output
    source, new = read_table(tiny_dataset, "records"), read_table(out, "records")
    assert sorted(new.column("record_id").to_pylist()) == sorted(source.column("record_id").to_pylist())
    assert set(new.column("hw_id").to_pylist()) == {hardware.hw_id}
    by_id = {r["record_id"]: r for r in source.to_pylist()}
    for r in new.to_pylist():
        s = by_id[r["record_id"]]
        assert (r["origin"], r["seed"], r["design_space"], r["trace_json"]) == \
            (s["origin"], s["seed"], s["design_space"], s["trace_json"])
        assert np.array_equal(np.asarray(r["features"]), np.asarray(s["features"]))
        assert len(r["latencies_s"]) == 2 or r["status"] != "ok"
        assert r["checked"] or r["status"] != "ok"  # check_fraction 1.0: inherited from the source's protocol
    assert validate_dataset(out, replay_count=4)[0] == []
    assert set(read_table(out, "workloads").column("workload_id").to_pylist()) == \
        set(source.column("workload_id").to_pylist())

    again = CliRunner().invoke(main, ["remeasure", tiny_dataset, "--out", out, *TINY])  # resume: nothing left
    assert again.exit_code == 0 and "12 already measured" in again.output and "0 measured" in again.output
    assert read_table(out, "records").num_rows == new.num_rows

    figures = run_agreement(source, new)
    assert figures["programs"] >= 2 and 0.0 <= figures["agreement"] <= 1.0
    report = CliRunner().invoke(main, ["noise", tiny_dataset, out, "--json", str(tmp_path / "noise.json")])
    assert report.exit_code == 0 and "matmul_64x64x64" in report.output
    print(report.output)  # the figures, for `pytest -s`


def test_bad_traces_are_reported_and_skipped(tiny_dataset, tmp_path, hardware):
    from cwm_bench.remeasure import RemeasureConfig, remeasure
    from cwm_bench.rows.reader import read_table
    from cwm_bench.rows.store import DatasetStore
    from cwm_bench.validate import validate_dataset

    rows = [r for r in read_table(tiny_dataset, "records").to_pylist() if r["status"] == "ok"][:3]
    rows[0]["trace_json"] = rows[0]["trace_json"][: len(rows[0]["trace_json"]) // 2]  # cut: not JSON
    insts, decisions = json.loads(rows[1]["trace_json"])
    rows[1]["trace_json"] = json.dumps([[["NoSuchInstruction", [], [], []], *insts], decisions])
    rows[2]["hw_kind"] = "gpu"  # another kind of device: features are recomputed, not copied
    source = str(tmp_path / "source")
    store = DatasetStore(source)
    store.write("workloads", read_table(tiny_dataset, "workloads").to_pylist())
    store.write("records", rows)
    store.close()

    out = str(tmp_path / "out")
    config = RemeasureConfig(protocol_overrides={"rounds": 1, "repeats_per_round": 1, "min_repeat_ms": 1,
                                                 "check_fraction": 0.0})
    report = remeasure(source, out, hardware, config, log=lambda text: None)
    assert len(report.failed_replays) == 2 and report.counts == {"ok": 1}
    assert rows[0]["record_id"] in report.failed_replays[0] and rows[1]["record_id"] in report.failed_replays[1]
    new = read_table(out, "records").to_pylist()
    assert [r["record_id"] for r in new] == [rows[2]["record_id"]]
    # Recomputed on this target, the features equal the stored ones: why same-kind rows reuse them.
    assert np.allclose(np.asarray(new[0]["features"]), np.asarray(rows[2]["features"]))
    assert validate_dataset(out, replay_count=1)[0] == []


def test_max_tasks_picks_seeded_nested_subsets_of_tasks():
    from cwm_bench.remeasure import select_tasks

    ids = [f"w{i}" for i in range(20)] * 3
    three, five = select_tasks(ids, 3, seed=1), select_tasks(ids, 5, seed=1)
    assert len(three) == 3 and three <= five and select_tasks(ids, 3, seed=1) == three
    assert select_tasks(ids, 3, seed=2) != three and select_tasks(ids, None) == set(ids)
    with pytest.raises(ValueError, match="max_tasks must be >= 1"):
        select_tasks(ids, 0)
