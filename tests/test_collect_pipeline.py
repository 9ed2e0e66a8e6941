"""The pipelined collector: a real small collection with overlap, what its rows say, and refusals."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from cwm_bench.collect import CollectConfig, Collector
from cwm_bench.hardware import detect_cpu, usable_cores
from cwm_bench.measure.protocol import MeasureProtocol
from cwm_bench.rows.store import DatasetStore
from cwm_bench.validate import validate_dataset
from cwm_bench.workload.suites import select_workloads

QUICK = MeasureProtocol(rounds=1, repeats_per_round=2, min_repeat_ms=1, check_fraction=0.3)

needs_two_cores = pytest.mark.skipif(usable_cores() < 2, reason="overlap needs 2 cores")


@needs_two_cores
def test_pipelined_collection_records_which_batches_overlapped(tmp_path):
    import os

    last = sorted(os.sched_getaffinity(0))[-1]
    before = set(os.sched_getaffinity(0))
    workloads = select_workloads("mini:matmul_64x64x64,softmax_64x128")
    config = CollectConfig(per_task=8, batch_size=3, protocol=QUICK, measure_cores=(last,), overlap=True)
    with Collector(detect_cpu(1), str(tmp_path / "data"), config, log=lambda s: None) as collector:
        summaries = collector.run(workloads)
    assert set(os.sched_getaffinity(0)) == before, "the collector gives this process its cores back"
    assert sum(sum(s.counts.values()) for s in summaries) == 16
    table = DatasetStore(str(tmp_path / "data"), readonly=True).read("records")
    assert table.num_rows == 16 and len(set(table.column("record_id").to_pylist())) == 16
    assert set(table.column("hw_num_cores").to_pylist()) == {1}
    flags = Counter(json.loads(p)["overlapped_build"] for p in table.column("protocol").to_pylist())
    assert flags[True] > 0, "batches measured while the next one was searched and built"
    assert flags[False] > 0, "the last batch is measured alone"
    assert collector.batches["alone"] >= 1 and collector.batches["overlapped"] >= 1
    problems, _ = validate_dataset(str(tmp_path / "data"), replay_count=4)
    assert problems == []


def test_overlap_without_own_cores_is_refused(tmp_path):
    with pytest.raises(ValueError, match="measures on its own cores"):
        Collector(detect_cpu(), str(tmp_path / "d"), CollectConfig(overlap=True))


@needs_two_cores
def test_hardware_must_describe_the_measuring_cores(tmp_path):
    import os

    last = sorted(os.sched_getaffinity(0))[-1]
    with pytest.raises(ValueError, match="pinned to 1"):
        Collector(detect_cpu(), str(tmp_path / "d"), CollectConfig(measure_cores=(last,), overlap=True))


def test_closing_mid_measurement_ends_the_measuring_thread(tmp_path):
    """Ctrl-C or an error while a batch is measured: close() must not hang on, or restart, the worker."""
    import os
    import threading
    import time

    if usable_cores() < 2:
        pytest.skip("overlap needs 2 cores")
    last = sorted(os.sched_getaffinity(0))[-1]
    slow = MeasureProtocol(rounds=50, repeats_per_round=3, min_repeat_ms=20, check_fraction=0.0)
    config = CollectConfig(per_task=8, batch_size=8, protocol=slow, measure_cores=(last,), overlap=True)
    collector = Collector(detect_cpu(1), str(tmp_path / "data"), config, log=lambda s: None)
    workloads = select_workloads("mini:matmul_64x64x64,softmax_64x128")
    errors = []

    def stop_when_measuring():
        deadline = time.time() + 120
        while time.time() < deadline and not (collector._in_flight and collector._runner is not None):
            time.sleep(0.05)
        time.sleep(1.0)
        raise_in = collector._runner  # what the main thread's error path does: close everything
        assert raise_in is not None
        started = time.time()
        collector.close()
        errors.append(time.time() - started)

    closer = threading.Thread(target=stop_when_measuring)
    closer.start()
    with pytest.raises(Exception):  # noqa: B017  (the run loses its workers: any error, but it must end)
        collector.run(workloads)
    closer.join(timeout=60)
    assert errors and errors[0] < 30, "close() returns promptly while a batch is being measured"
    assert not [t for t in threading.enumerate() if t.name.startswith("cwm-measure")], "no measuring thread left"


def test_impossible_measure_cores_are_a_usage_error(tmp_path):
    import os

    from click.testing import CliRunner

    from cwm_bench.cli import main

    result = CliRunner().invoke(main, ["collect", "--measure-cores", str(usable_cores()), "--out",
                                       str(tmp_path / "d")])
    assert result.exit_code == 2 and "building at least 1" in result.output
    assert not os.path.exists(tmp_path / "d")
