"""The tuning report's arithmetic on synthetic runs (the figures a README table is made of)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cwm_bench.tuning.summary import Run, TuneReportError, bootstrap_geomean, summarize_runs, trials_to_match


def _run(label: str, seed: int, curves: dict[str, list[float]], budget: int | None = None) -> Run:
    arrays = {w: np.minimum.accumulate(np.asarray(v, dtype=float)) for w, v in curves.items()}
    n = max(len(v) for v in curves.values())
    return Run(f"/x/{label}/{seed}", label, seed, "g", budget or n, None, arrays, {w: w for w in curves},
               {"model_s": 1.0, "search_s": 1.0, "build_s": 1.0, "measure_s": 4.0, "log_s": 0.0}, n)


def test_speedup_is_the_geomean_of_reference_over_model_and_wins_count_pairs():
    runs = [_run("ansor", s, {"a": [4, 4], "b": [9, 9]}) for s in (0, 1)]
    runs += [_run("m", 0, {"a": [2, 2], "b": [9, 9]}), _run("m", 1, {"a": [8, 1], "b": [9, 9]})]
    rows, facts = summarize_runs(runs, "ansor", budget=2, samples=200)
    m = next(r for r in rows if r.label == "m")
    # pairs: a0 4/2, a1 4/1, b0 1, b1 1 -> geomean (2*4*1*1)^(1/4)
    assert m.geomean == pytest.approx(8 ** 0.25)
    assert m.wins == pytest.approx(0.5) and m.pairs == 4
    assert m.low <= m.geomean <= m.high
    assert m.model_share_of_measure == pytest.approx(0.25)
    # at budget 1 the second seed's "a" is slower than ansor's
    rows1, _ = summarize_runs(runs, "ansor", budget=1, samples=200)
    assert next(r for r in rows1 if r.label == "m").geomean == pytest.approx((2 * 0.5) ** 0.25)
    assert facts["long_budget"] is None


def test_runs_that_did_not_reach_the_budget_are_left_out():
    runs = [_run("ansor", 0, {"a": [4, 4]}), _run("m", 0, {"a": [1]}, budget=2)]
    rows, _ = summarize_runs(runs, "ansor", budget=2, samples=50)
    assert math.isnan(next(r for r in rows if r.label == "m").geomean)


def test_bootstrap_interval_widens_with_disagreeing_tasks():
    tight = bootstrap_geomean({"a": {0: 0.1, 1: 0.1}, "b": {0: 0.1, 1: 0.1}}, samples=300)
    wide = bootstrap_geomean({"a": {0: 0.5, 1: 0.4}, "b": {0: -0.3, 1: -0.2}}, samples=300)
    assert tight[0] == pytest.approx(math.exp(0.1)) and tight[2] - tight[1] < 1e-9
    assert wide[2] - wide[1] > 0.3


def test_trials_to_match_against_the_reference_at_a_larger_budget():
    reference = {"a": 1.0, "b": 2.0}
    runs = [_run("m", 0, {"a": [3, 1.01, 1.0], "b": [2.5, 2.5, 2.0]}),
            _run("m", 1, {"a": [1.0, 1.0, 1.0], "b": [2.02, 2.0, 2.0]})]
    # seed 0 gets within 2% at trial 3, seed 1 at trial 1: median 2
    assert trials_to_match(runs, "m", reference, 0.02) == 2
    assert trials_to_match([_run("m", 0, {"a": [3, 3], "b": [3, 3]})], "m", reference, 0.02) is None


def test_a_model_without_any_valid_program_loses_the_pair():
    runs = [_run("ansor", 0, {"a": [4, 4], "b": [2, 2]}), _run("m", 0, {"a": [math.inf, math.inf], "b": [1, 1]})]
    rows, _ = summarize_runs(runs, "ansor", budget=2, samples=50)
    m = next(r for r in rows if r.label == "m")
    assert m.invalid == 1 and m.wins == pytest.approx(0.5) and m.geomean == pytest.approx(2.0)


def test_a_reference_that_did_not_run_is_one_clear_error():
    with pytest.raises(TuneReportError, match="reference 'ansor' did not run"):
        summarize_runs([_run("m", 0, {"a": [1]})], "ansor", budget=1)
