"""kill -9 a real `cwm-bench collect` mid-run, resume it, and check nothing was lost or duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from cwm_bench.rows.store import DatasetStore
from cwm_bench.validate import validate_dataset

ARGS = ["-m", "cwm_bench.cli", "collect", "--workloads", "mini:matmul_64x64x64,softmax_64x128",
        "--per-task", "10", "--batch-size", "3", "--rounds", "1", "--repeats", "2", "--min-repeat-ms", "1",
        "--no-progress"]


@pytest.mark.parametrize("mode", [["--overlap", "off"], ["--overlap", "on", "--measure-cores", "1"]],
                         ids=["serial", "pipelined"])
def test_kill_minus_nine_then_resume(tmp_path, mode):
    args = [*ARGS, *mode]
    out = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, *args, "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "records").glob("*.parquet"))) < 2:
        time.sleep(0.2)
    children = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    shards_at_kill = len(list((out / "records").glob("*.parquet")))
    assert 2 <= shards_at_kill < 8, "the kill must land mid-collection"
    psutil.wait_procs(children, timeout=10)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], \
        "build/measure workers must die with the collector"

    resumed = subprocess.run([sys.executable, *args, "--out", str(out)], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "total: ok" in resumed.stdout

    table = DatasetStore(str(out), readonly=True).read("records")
    assert table.num_rows == 20
    keys = list(zip(table.column("record_id").to_pylist(), table.column("hw_id").to_pylist(), strict=True))
    assert len(set(keys)) == 20
    problems, _ = validate_dataset(str(out), replay_count=5)
    assert problems == []
    # A third run has nothing left to do.
    again = subprocess.run([sys.executable, *args, "--out", str(out)], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and DatasetStore(str(out), readonly=True).read("records").num_rows == 20
