"""The overlap noise check: the agreement interval, verdicts per machine, and a real small check."""

from __future__ import annotations

import numpy as np
import pytest

from cwm_bench.measure.cores import plan_cores
from cwm_bench.measure.overlap_check import (
    OverlapVerdict,
    agreement_with_interval,
    check_overlap,
    load_verdict,
    random_programs,
    save_verdict,
)


@pytest.fixture(autouse=True)
def own_verdict_cache(tmp_path, monkeypatch):
    """Verdicts saved here must not leak into other tests (where `collect --overlap auto` reads them)."""
    from cwm_bench.cache import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))


def test_agreement_interval_brackets_the_truth():
    rng = np.random.default_rng(0)
    truth = {f"p{i}": float(x) for i, x in enumerate(rng.lognormal(size=60))}
    task_of = {k: ("a" if i < 30 else "b") for i, k in enumerate(truth)}
    same, ci = agreement_with_interval(truth, truth, task_of, samples=200)
    assert same == 1.0 and ci == [1.0, 1.0]
    flipped, _ = agreement_with_interval(truth, {k: -v for k, v in truth.items()}, task_of, samples=50)
    assert flipped == 0.0
    noisy = {k: v * float(rng.lognormal(sigma=0.5)) for k, v in truth.items()}
    value, (low, high) = agreement_with_interval(truth, noisy, task_of, samples=300)
    assert 0.5 < value < 1.0 and low < value < high


def _verdict(overlapped: float) -> OverlapVerdict:
    return OverlapVerdict(hw_id="x", measure_cores=[1], build_cores=[0], programs=200, tasks=3, quiet=0.96,
                          quiet_ci=[0.95, 0.97], overlapped=overlapped, overlapped_ci=[overlapped - 0.01,
                                                                                         overlapped + 0.01],
                          protocol="{}", checked_at="2026-12-01T00:00:00+00:00")


def test_verdicts_are_kept_per_machine_and_core_split(hardware):
    plan = plan_cores(1, usable=[0, 1])
    other = plan_cores(1, usable=[0, 1, 2])
    assert load_verdict(hardware, plan) is None
    save_verdict(_verdict(0.97), hardware, plan)
    assert load_verdict(hardware, plan).ok
    assert load_verdict(hardware, other) is None
    save_verdict(_verdict(0.93), hardware, plan)
    loaded = load_verdict(hardware, plan)
    assert not loaded.ok and "refused" in loaded.lines()[-1]


def test_collect_overlap_auto_follows_the_verdict():
    from cwm_bench.cli.collection import _overlap_plan
    from cwm_bench.hardware import detect_cpu, usable_cores
    from cwm_bench.measure.cores import default_measure_cores

    if usable_cores() < 2:
        pytest.skip("needs 2 cores")
    plan = plan_cores(default_measure_cores())
    hw = detect_cpu(len(plan.measure))
    cores, on, note = _overlap_plan("auto", None)
    assert (cores, on) == (None, False) and "never checked" in note
    save_verdict(_verdict(0.97), hw, plan)
    cores, on, note = _overlap_plan("auto", None)
    assert cores == plan.measure and on and "0.970" in note
    save_verdict(_verdict(0.90), hw, plan)
    cores, on, note = _overlap_plan("auto", None)
    assert not on and "below 0.95" in note
    assert _overlap_plan("on", None)[1] and not _overlap_plan("off", None)[1]


def test_a_small_real_check_times_quiet_and_overlapped_runs(matmul):
    from cwm_bench.hardware import detect_cpu, target_for, usable_cores

    if usable_cores() < 2:
        pytest.skip("needs 2 cores")
    plan = plan_cores(1)
    hw = detect_cpu(1)
    target = target_for(hw)
    programs = random_programs([matmul], target, 6)
    from cwm_bench.measure.protocol import MeasureProtocol

    verdict = check_overlap(hw, plan, str(target), programs, MeasureProtocol(rounds=1, repeats_per_round=2,
                                                                             min_repeat_ms=1), log=lambda s: None)
    assert verdict.programs == 6 and verdict.tasks == 1
    assert 0.0 <= verdict.overlapped <= 1.0 and verdict.quiet_ci[0] <= verdict.quiet <= verdict.quiet_ci[1]


def test_auto_keeps_a_resumed_folders_hardware(tiny_dataset):
    """A folder collected on every core stays so under auto, even once overlap is allowed here."""
    from cwm_bench.cli.collection import _overlap_plan
    from cwm_bench.hardware import detect_cpu, usable_cores
    from cwm_bench.measure.cores import default_measure_cores

    if usable_cores() < 2:
        pytest.skip("needs 2 cores")
    plan = plan_cores(default_measure_cores())
    save_verdict(_verdict(0.99), detect_cpu(len(plan.measure)), plan)
    cores, on, note = _overlap_plan("auto", None, tiny_dataset)
    assert (cores, on) == (None, False) and "every core" in note
    assert _overlap_plan("auto", None, None)[1], "a new folder overlaps where the verdict allows"
