"""`cwm-bench tune` for real: 2 tasks x 8 trials, killed with SIGKILL mid-run, resumed, reported."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from cwm_bench.cli import main
from cwm_bench.rows.reader import read_table
from cwm_bench.tuning.run_log import read_run, read_trials, run_folders

TUNE = ["tune", "--baselines", "ansor,random", "--workloads", "mini:matmul_64x64x64,softmax_64x128",
        "--budget", "8", "--per-iter", "4", "--seeds", "1", "--no-progress"]


def _start(out: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cwm_bench.cli", *TUNE, "--out", out], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_tune_writes_rows_resumes_after_kill_9_without_duplicates_and_reports(tmp_path):
    out = str(tmp_path / "tuning")
    process = _start(out)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:  # kill once the first batch is logged
        if any(read_trials(f).num_rows for f in run_folders(out)) if os.path.isdir(out) else False:
            break
        time.sleep(0.2)
    assert process.poll() is None, process.stderr.read()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed = [f for f in run_folders(out) if read_run(f) is None]
    assert killed, "the killed run must be unfinished"
    before = {f: read_trials(f).num_rows for f in run_folders(out)}

    resumed = subprocess.run([sys.executable, "-m", "cwm_bench.cli", *TUNE, "--out", out], capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    folders = run_folders(out)
    assert len(folders) == 4  # 2 tasks x 2 models x 1 seed
    for folder in folders:
        trials = read_trials(folder)
        assert trials.column("trial").to_pylist() == list(range(8)), folder
        summary = read_run(folder)
        assert summary["trials"] == 8 and summary["budget_per_task"] == 8
        records = read_table(folder, "records")
        assert set(pc.unique(records["origin"]).to_pylist()) == {"tuning"}
        # every trial names a stored record; a record is stored once
        assert set(trials.column("record_id").to_pylist()) <= set(records.column("record_id").to_pylist())
        assert len(set(records.column("record_id").to_pylist())) == records.num_rows
        ok = trials.filter(pc.equal(trials["status"], "ok"))
        assert ok.num_rows >= 6 and min(ok.column("latency_s").to_pylist()) > 0
        if folder in killed:
            assert summary["resumed_from_trial"] == before[folder] > 0
    assert CliRunner().invoke(main, ["validate", folders[0]]).exit_code == 0

    png, table = tmp_path / "curves.png", tmp_path / "table.json"
    report = CliRunner().invoke(main, ["tune-report", out, "--budget", "8", "--png", str(png), "--json", str(table)])
    assert report.exit_code == 0, report.output
    assert "| random | 2 | 1 |" in report.output and "| ansor | 2 | 1 | 1.000×" in report.output
    assert png.stat().st_size > 10_000
    # random's figure is the geomean over the 2 tasks of ansor's best / random's best, from the trials
    best = {}
    for folder in folders:
        trials = read_trials(folder)
        ok = trials.filter(pc.equal(trials["status"], "ok"))
        best[(folder.split(os.sep)[-3], folder.split(os.sep)[-2])] = min(ok.column("latency_s").to_pylist())
    tasks = {task for task, _ in best}
    expected = math.prod(best[(t, "ansor")] / best[(t, "random")] for t in tasks) ** (1 / len(tasks))
    rows = {r["label"]: r for r in json.loads(table.read_text())["rows"]}
    assert rows["random"]["geomean"] == pytest.approx(expected)


def test_tune_refuses_bad_input_in_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["tune", "--baselines", "ansor-pretrained", "--workloads", "mini",
                                  "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "needs --pretrained" in result.output
    result = runner.invoke(main, ["tune", "--baselines", "ansor", "--workloads", "nope", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--workloads nope" in result.output
    result = runner.invoke(main, ["tune", "--baselines", "ansor", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "either --workloads or --network" in result.output
    assert not os.path.exists(tmp_path / "x")
