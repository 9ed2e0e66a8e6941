"""Importing a real MetaSchedule JSON database (written by MetaSchedule's own JSONDatabase)."""

from __future__ import annotations

import json
import os
import shutil

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cwm_bench.import_ms import RECORD_FILE, WORKLOAD_FILE, ImportError_, import_databases
from cwm_bench.rows.store import DatasetStore
from cwm_bench.validate import validate_dataset

FAILED = 1e10  # what MetaSchedule's AddToDatabase commits for a failed build or run
NUM_PROGRAMS = 6


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    """A JSON database: 6 real matmul schedules (one failed run) plus a duplicate of the first."""
    from cwm_bench.tvm_env import load_tensor_intrinsics

    load_tensor_intrinsics("llvm")  # before any TuneContext, or TVM imports every family (~30 s)
    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.testing import te_workload

    from cwm_bench.candidates.generate import CandidateGenerator
    from cwm_bench.workload.workload import Workload

    func = te.create_prim_func(te_workload.matmul(64, 64, 64))
    target = tvm.target.Target({"kind": "llvm", "num-cores": 2})
    candidates = CandidateGenerator(Workload.from_mod(func, "mm", "matmul", "operator"), target).random(6)
    assert len(candidates) == NUM_PROGRAMS
    path = str(tmp_path_factory.mktemp("msdb"))
    database = ms.database.JSONDatabase(work_dir=path)
    workload = database.commit_workload(tvm.IRModule({"main": func}))
    args = ms.arg_info.ArgInfo.from_prim_func(func)
    run_secs = [[1e-4 * (i + 1), 2e-4 * (i + 1)] for i in range(NUM_PROGRAMS)]
    run_secs[3] = [FAILED]
    for c, secs in [*zip(candidates, run_secs, strict=True), (candidates[0], [5e-5])]:
        database.commit_tuning_record(ms.database.TuningRecord(c.sch.trace, workload, secs, target, args))
    return path


@pytest.fixture(scope="module")
def imported(db, tmp_path_factory) -> tuple[str, str]:
    out = str(tmp_path_factory.mktemp("imported") / "data")
    return out, import_databases([db], out)


def _copy(db: str, tmp_path, edit=None) -> str:
    """A copy of the database; `edit(lines)` rewrites the tuning-record file's lines."""
    copy = str(tmp_path / "db")
    shutil.copytree(db, copy)
    if edit is not None:
        path = os.path.join(copy, RECORD_FILE)
        with open(path) as handle:
            lines = handle.read().splitlines()
        with open(path, "w") as handle:
            handle.write("".join(line + "\n" for line in edit(lines)))
    return copy


def test_import_gives_a_valid_dataset(imported):
    out, report = imported
    problems, summary = validate_dataset(out)
    assert problems == [], problems
    assert summary.startswith("1 workloads, 6 records")
    assert "6 records imported (5 ok, 1 failed in MetaSchedule), 1 skipped duplicates, 0 failed replays" \
        in report


def test_rows_carry_status_latencies_features_and_provenance(imported, db):
    out, _ = imported
    store = DatasetStore(out)
    rows = store.read("records").to_pylist()
    assert sorted(r["status"] for r in rows) == ["ok"] * 5 + ["run_error"]
    assert {r["origin"] for r in rows} == {"imported"}
    assert {(r["seed"], r["design_space"], r["checked"]) for r in rows} == {(0, -1, False)}
    assert all(r["features"] and len(r["features"][0]) == 164 for r in rows)
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["latency_s"])
    assert ok[0]["latencies_s"] == [1e-4, 2e-4]  # the file's float64 values, not TVM's float32
    failed = next(r for r in rows if r["status"] == "run_error")
    assert failed["latencies_s"] == [] and failed["latency_s"] is None
    assert "failed in MetaSchedule (run_secs=[10000000000" in failed["error"]
    assert json.loads(rows[0]["protocol"]) == {"source": "metaschedule", "db": db}
    assert json.loads(rows[0]["target"])["num-cores"] == 2
    assert (rows[0]["hw_kind"], rows[0]["hw_num_cores"]) == ("cpu", 2)
    assert json.loads(rows[0]["hw_descriptor"])["details"] == {"imported_from": db}
    (workload,) = store.read("workloads").to_pylist()
    assert (workload["family"], workload["source"]) == ("matmul", "imported")
    assert workload["task_name"] == f"imported_{workload['workload_id']}"  # tune_tir names tasks "main"


def test_importing_again_adds_nothing(imported, db, tmp_path):
    out = str(tmp_path / "data")
    shutil.copytree(imported[0], out)
    report = import_databases([db], out)
    assert "0 records imported" in report and "7 skipped duplicates" in report
    problems, summary = validate_dataset(out, replay_count=0)
    assert problems == [] and summary.startswith("1 workloads, 6 records")


def test_a_trace_that_does_not_replay_is_reported_and_skipped(db, tmp_path):
    broken = _copy(db, tmp_path, lambda lines: [lines[0], lines[1].replace('["C","main"]', '["nope","main"]'),
                                                *lines[2:]])
    out = str(tmp_path / "data")
    report = import_databases([broken], out)
    assert "5 records imported" in report and "1 failed replays" in report
    assert f"{broken}/{RECORD_FILE} line 2: " in report
    assert validate_dataset(out, replay_count=0)[0] == []


@pytest.mark.parametrize("case, message", [
    ("missing", f"missing {RECORD_FILE}"),
    ("corrupt", f"{RECORD_FILE} line 3: not valid JSON"),
    ("empty", "empty database"),
    ("bad_index", "line 1: workload index 7 out of range"),
])
def test_bad_input_raises_and_writes_nothing(db, tmp_path, case, message):
    edits = {"missing": None, "corrupt": lambda lines: lines[:2] + ['[0, [["truncated"'] + lines[3:],
             "empty": lambda lines: [], "bad_index": lambda lines: ["[7" + lines[0][2:]] + lines[1:]}
    bad = _copy(db, tmp_path, edits[case])
    if case == "missing":
        os.remove(os.path.join(bad, RECORD_FILE))
    out = str(tmp_path / "data")
    with pytest.raises(ImportError_, match=message) as info:
        import_databases([bad], out)
    assert bad in str(info.value) and "\n" not in str(info.value)
    assert not os.path.exists(out)


def test_bad_second_database_stops_before_the_first_is_written(db, tmp_path):
    bad = _copy(db, tmp_path)
    os.remove(os.path.join(bad, WORKLOAD_FILE))
    out = str(tmp_path / "data")
    with pytest.raises(ImportError_, match=WORKLOAD_FILE):
        import_databases([db, bad], out)
    assert not os.path.exists(out)


def test_cli(db, tmp_path):
    from cwm_bench.cli import main

    out = str(tmp_path / "data")
    good = CliRunner().invoke(main, ["import-metaschedule", db, "--out", out])
    assert good.exit_code == 0, good.output
    assert "6 records imported" in good.output
    assert len(pq.read_table(os.path.join(out, "records")).to_pylist()) == 6
    bad = _copy(db, tmp_path)
    os.remove(os.path.join(bad, RECORD_FILE))
    failed = CliRunner().invoke(main, ["import-metaschedule", bad, "--out", str(tmp_path / "other")])
    assert failed.exit_code != 0
    assert failed.output.strip().count("\n") == 0 and RECORD_FILE in failed.output
