"""Measurement on TVM RPC servers, on loopback: a real tracker and real servers, killed for real."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from cwm_bench.measure.loopback import LoopbackCluster, free_port
from cwm_bench.measure.protocol import MeasureProtocol
from cwm_bench.measure.rpc import RpcConfig, TrackerError, check_tracker, parse_tracker

QUICK = MeasureProtocol(rounds=2, repeats_per_round=1, min_repeat_ms=1, check_fraction=0.0, timeout_s=20)


def test_parse_tracker():
    assert parse_tracker("127.0.0.1:9190") == ("127.0.0.1", 9190)
    assert parse_tracker("[::1]:9190") == ("[::1]", 9190)
    for bad in ("localhost", ":9190", "host:port", "host:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_tracker(bad)


def test_unreachable_tracker_is_one_clear_error(tmp_path):
    from cwm_bench.cli import main

    out = tmp_path / "never"
    result = CliRunner().invoke(main, ["collect", "--out", str(out), "--rpc-tracker", f"127.0.0.1:{free_port()}",
                                       "--device-key", "k"])
    assert result.exit_code == 1
    assert "cannot reach the RPC tracker" in result.output and "rpc_tracker" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing was started, nothing written


def test_rpc_options_need_each_other(tmp_path):
    from cwm_bench.cli import main

    result = CliRunner().invoke(main, ["collect", "--out", str(tmp_path / "x"), "--rpc-tracker", "127.0.0.1:1"])
    assert result.exit_code == 2 and "--device-key" in result.output
    result = CliRunner().invoke(main, ["collect", "--out", str(tmp_path / "x"), "--device-key", "k"])
    assert result.exit_code == 2 and "--rpc-tracker" in result.output
    hw = tmp_path / "hw.json"
    hw.write_text("{}")
    result = CliRunner().invoke(main, ["collect", "--out", str(tmp_path / "x"), "--device-hardware", str(hw)])
    assert result.exit_code == 2 and "--rpc-tracker" in result.output  # never record another machine's CPU
    assert not (tmp_path / "x").exists()


def test_tracker_without_servers_for_the_key():
    with LoopbackCluster(servers=1, key="present") as cluster:
        assert len(check_tracker(RpcConfig(cluster.tracker, "present"))) == 1
        with pytest.raises(TrackerError, match="no server is registered under key 'absent'.*keys there: present"):
            check_tracker(RpcConfig(cluster.tracker, "absent"))


def _built(target, mods):
    from cwm_bench.build.builder import ParallelBuilder
    from cwm_bench.measure.runner import MeasureItem

    builder = ParallelBuilder(str(target), num_workers=1)
    builds = builder.build(list(mods.items()))
    assert all(b.status == "ok" for b in builds), [b.error for b in builds]
    specs = [((64, 64), "float32")] * 3
    return builder, [MeasureItem(b.key, b.lib_path, "w", specs) for b in builds]


def test_a_server_killed_mid_measurement_loses_nothing(target, generator):
    """One session: its server dies while a kernel runs there; everything is measured on the other."""
    from cwm_bench.measure.rpc_runner import RpcRunner
    from tests.kernels import sleeping_mod

    mods = {"slow": sleeping_mod(1), **{c.program_hash: c.mod for c in generator.random(2)}}
    builder, items = _built(target, mods)
    with LoopbackCluster(servers=2, key="kill", threads_per_server=1) as cluster:
        runner = RpcRunner(QUICK, RpcConfig(cluster.tracker, "kill", parallel=1, connect_timeout_s=20))
        lane = runner.lanes[0]
        results: list = []
        worker = threading.Thread(target=lambda: results.extend(runner.measure(items)))
        worker.start()
        deadline = time.monotonic() + 30
        while lane.server is None and time.monotonic() < deadline:
            time.sleep(0.05)
        first = lane.server
        assert first is not None
        time.sleep(0.5)  # the slow kernel's warm-up call (1 s) is running on `first` now
        victim = next(i for i in range(len(cluster.servers)) if first.endswith(f":{_port_of(cluster, i)}"))
        cluster.kill_server(victim)
        worker.join(timeout=120)
        runner.close()
    builder.close()
    assert not worker.is_alive()
    assert [r.status for r in results] == ["ok", "ok", "ok"], [r.error for r in results]
    survivor = {r.measured_by for r in results}
    assert len(survivor) == 1 and survivor.pop() != f"rpc:kill@{first}"  # all timed on the other server
    assert runner.retries >= 1


def _port_of(cluster: LoopbackCluster, index: int) -> str:
    args = cluster.servers[index].args
    return args[args.index("--port") + 1]


def test_a_kernel_that_hangs_every_server_becomes_one_timeout_row(target, generator):
    from cwm_bench.measure.rpc_runner import RpcRunner
    from tests.kernels import sleeping_mod

    mods = {"hang": sleeping_mod(1000), **{c.program_hash: c.mod for c in generator.random(1)}}
    builder, items = _built(target, mods)
    protocol = MeasureProtocol(rounds=1, repeats_per_round=1, min_repeat_ms=1, check_fraction=0.0, timeout_s=2)
    with LoopbackCluster(servers=2, key="hang", threads_per_server=1) as cluster:
        runner = RpcRunner(protocol, RpcConfig(cluster.tracker, "hang", max_attempts=2, session_timeout_s=5,
                                               connect_timeout_s=20))
        started = time.monotonic()
        results = runner.measure(items)
        runner.close()
    builder.close()
    hang, good = results
    assert good.status == "ok" and good.measured_by.startswith("rpc:hang@127.0.0.1:")
    assert hang.status == "timeout" and "lost on 2 servers" in hang.error
    assert time.monotonic() - started < 90


def test_collect_mini_through_two_servers_while_one_dies(tmp_path, hardware):
    """The issue's acceptance test: every candidate measured or an error row, exactly once."""
    from cwm_bench.collect import CollectConfig, Collector
    from cwm_bench.rows.schema import STATUSES
    from cwm_bench.rows.store import DatasetStore
    from cwm_bench.validate import validate_dataset
    from cwm_bench.workload.suites import select_workloads

    workloads = select_workloads("mini")
    out = str(tmp_path / "rpc")
    with LoopbackCluster(servers=2, key="mini", threads_per_server=1) as cluster:
        config = CollectConfig(per_task=6, batch_size=6, protocol=QUICK,
                               rpc=RpcConfig(cluster.tracker, "mini", connect_timeout_s=20))
        killed = threading.Event()

        def after_batch(n: int, task: str) -> None:
            if not killed.is_set():  # the next batch is measured while server0 goes down
                killed.set()
                threading.Timer(1.0, cluster.kill_server, args=(0,)).start()

        Collector(hardware, out, config, on_records=after_batch).run(workloads)
    records = DatasetStore(out, readonly=True).read("records").to_pylist()
    assert killed.is_set()
    assert len(records) == 6 * len(workloads)
    assert len({(r["record_id"], r["hw_id"]) for r in records}) == len(records)  # exactly once
    assert {r["status"] for r in records} <= set(STATUSES)
    measured = [r for r in records if r["status"] in ("ok", "wrong_result")]
    assert all(r["measured_by"].startswith("rpc:mini@127.0.0.1:") for r in measured)
    assert len({r["measured_by"] for r in measured}) == 2  # both servers measured before the kill
    problems, _ = validate_dataset(out, replay_count=2)
    assert problems == []


def test_a_server_with_another_cpu_stops_the_run(target, generator):
    from cwm_bench.measure.rpc_runner import RpcRunner

    builder, items = _built(target, {c.program_hash: c.mod for c in generator.random(1)})
    with LoopbackCluster(servers=1, key="cpu") as cluster:
        runner = RpcRunner(QUICK, RpcConfig(cluster.tracker, "cpu", connect_timeout_s=20), expected_cpu="not-this-cpu")
        with pytest.raises(TrackerError, match="builds for 'not-this-cpu'"):
            runner.measure(items)
        runner.close()
    builder.close()


SUPERVISED = (os.path.join(os.path.dirname(__file__), "..", "..", "tools", "rpc_server_supervised.py"), "--",
              sys.executable, "-m", "tvm.exec.rpc_server")


def test_a_kernel_that_kills_its_session_with_a_supervised_server(target, generator):
    """A kernel that aborts kills its session process, which stops TVM's server from serving (here it
    leaves the tracker); tools/rpc_server_supervised.py restarts it, so the one server measures the rest."""
    from cwm_bench.measure.rpc_runner import RpcRunner
    from tests.kernels import aborting_mod

    builder, items = _built(target, {"abort": aborting_mod(), **{c.program_hash: c.mod for c in generator.random(2)}})
    with LoopbackCluster(servers=1, key="crash", server_argv=SUPERVISED) as cluster:
        runner = RpcRunner(QUICK, RpcConfig(cluster.tracker, "crash", max_attempts=2, connect_timeout_s=60))
        try:
            results = runner.measure(items)
        finally:
            runner.close()
    builder.close()
    crashed, *good = results
    assert [r.status for r in good] == ["ok", "ok"], [r.error for r in good]
    assert crashed.status == "run_error" and "lost on 2" in crashed.error  # charged twice, on restarted servers
