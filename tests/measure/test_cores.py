"""Splitting cores between measurement and builds: counts, lists, and one-line refusals."""

from __future__ import annotations

import pytest

from cwm_bench.measure.cores import CorePlanError, default_measure_cores, parse_measure_cores, plan_cores


def test_counts_take_the_last_cores_and_lists_are_exact():
    assert parse_measure_cores("2") == 2
    assert parse_measure_cores("1,3") == (1, 3)
    assert parse_measure_cores("2-3") == (2, 3)
    plan = plan_cores(2, usable=[0, 1, 2, 3])
    assert plan.measure == (2, 3) and plan.build == (0, 1)
    plan = plan_cores((0, 2), usable=[0, 1, 2, 3])
    assert plan.measure == (0, 2) and plan.build == (1, 3)
    assert "core(s) 0,2" in plan.text
    assert default_measure_cores([0, 1]) == 1 and default_measure_cores([0]) == 1


@pytest.mark.parametrize("spec, usable, message", [
    (2, [0, 1], "at least 1"),
    (0, [0, 1], "at least 1"),
    (1, [0], "1 usable core"),
    ((5,), [0, 1], "not usable here"),
    ((0, 1), [0, 1], "leave at least one"),
])
def test_impossible_splits_are_refused(spec, usable, message):
    with pytest.raises(CorePlanError, match=message):
        plan_cores(spec, usable=usable)


def test_bad_spec_is_refused_in_one_line():
    with pytest.raises(CorePlanError, match="expected a count"):
        parse_measure_cores("two")
