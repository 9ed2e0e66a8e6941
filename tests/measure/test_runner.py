"""Real kernels measured in the isolated worker: good, aborting, hanging, and wrong ones."""

from __future__ import annotations

import pytest

from cwm_bench.build.builder import ParallelBuilder
from cwm_bench.measure.protocol import MeasureProtocol, summarize
from cwm_bench.measure.runner import MeasureItem, Runner
from tests.kernels import aborting_mod, off_by_one_matmul_mod, sleeping_mod


@pytest.fixture(scope="module")
def built(generator, matmul, target):
    good = generator.random(2)
    builder = ParallelBuilder(str(target), num_workers=2)
    mods = [("good0", good[0].mod), ("good1", good[1].mod), ("abort", aborting_mod()),
            ("sleep", sleeping_mod()), ("wrong", off_by_one_matmul_mod()), ("reference", matmul.mod)]
    results = {r.key: r.lib_path for r in builder.build(mods)}
    assert all(results.values())
    yield results
    builder.close()


def _item(built, matmul, key, check=False):
    specs = [(list(a.shape), a.dtype) for a in matmul.args]
    return MeasureItem(key, built[key], matmul.workload_id, specs, built["reference"] if check else None)


def test_crash_and_hang_become_error_rows_and_the_rest_is_measured(built, matmul):
    protocol = MeasureProtocol(rounds=2, repeats_per_round=2, min_repeat_ms=1, timeout_s=10)
    runner = Runner(protocol)
    try:
        keys = ["good0", "abort", "sleep", "good1"]
        results = runner.measure([_item(built, matmul, k) for k in keys])
        by_key = {r.key: r for r in results}
        assert [r.key for r in results] == keys
        assert by_key["abort"].status == "run_error" and "died" in by_key["abort"].error
        assert by_key["sleep"].status == "timeout"
        for k in ("good0", "good1"):  # every timing of every round is kept
            assert by_key[k].status == "ok" and len(by_key[k].latencies_s) == 4
            assert all(0 < x < 0.1 for x in by_key[k].latencies_s)
        assert runner.worker.restarts >= 2
    finally:
        runner.close()


def test_outputs_are_checked_against_the_unscheduled_program(built, matmul):
    runner = Runner(MeasureProtocol(rounds=1, repeats_per_round=1, min_repeat_ms=1))
    try:
        good, wrong = runner.measure([_item(built, matmul, "good0", check=True),
                                      _item(built, matmul, "wrong", check=True)])
        assert good.status == "ok" and good.checked
        assert wrong.status == "wrong_result" and wrong.checked and "max abs error 1" in wrong.error
        assert wrong.latencies_s  # its timings are kept: a wrong program is data too
    finally:
        runner.close()


def test_summary_is_the_median_of_all_timings():
    assert summarize([3.0, 1.0, 2.0]) == 2.0
    assert summarize([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert summarize([]) is None
    assert MeasureProtocol.from_json(MeasureProtocol(rounds=5).to_json()).rounds == 5


def test_slow_kernels_take_fewer_timings_per_round(built, matmul):
    # max_round_s below one timing (>= 1 ms here): every round takes a single timing instead of 3
    runner = Runner(MeasureProtocol(rounds=2, repeats_per_round=3, min_repeat_ms=1, max_round_s=0.0001))
    try:
        (result,) = runner.measure([_item(built, matmul, "good0")])
        assert result.status == "ok" and len(result.latencies_s) == 2
    finally:
        runner.close()


def test_a_reference_that_hangs_leaves_outputs_unchecked_not_the_candidate_failed(built, matmul):
    # the "unscheduled program" here sleeps for 1000 s; the reference has its own limit
    runner = Runner(MeasureProtocol(rounds=1, repeats_per_round=1, min_repeat_ms=1, reference_timeout_s=3))
    specs = [(list(a.shape), a.dtype) for a in matmul.args]
    try:
        (result,) = runner.measure([MeasureItem("good0", built["good0"], matmul.workload_id, specs, built["sleep"])])
        assert result.status == "ok" and not result.checked and result.latencies_s
        assert "timeout" in runner._reference_failed[matmul.workload_id]
    finally:
        runner.close()
