"""The Evaluator's contract: input checks, per-task metrics, aggregation, fractions of the oracle reference."""

from __future__ import annotations

import numpy as np
import pytest

from cwm_bench.metrics import Evaluator, EvaluatorInputError


def _input():
    # task a: perfectly ranked; task b: reversed; task c: a single program (skipped)
    return {"task_id": ["a"] * 3 + ["b"] * 3 + ["c"],
            "y_true_latency": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 5.0],
            "y_score": [3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 0.0],
            "task_weight": [3.0] * 3 + [1.0] * 3 + [1.0]}


def test_aggregates_per_task_and_weighted():
    result = Evaluator(["opa", "top1"], reference={"opa": 0.8}, n_bootstrap=200).eval(_input())
    assert result["num_tasks"] == 2 and result["num_programs"] == 6
    assert result["per_task"]["a"]["opa"] == 1.0 and result["per_task"]["b"]["opa"] == 0.0
    assert result["opa"]["mean"] == 0.5
    assert result["opa"]["weighted_mean"] == pytest.approx(0.75)  # (3*1 + 1*0) / 4
    assert 0.0 <= result["opa"]["ci_low"] <= 0.5 <= result["opa"]["ci_high"] <= 1.0
    assert result["opa"]["fraction_of_oracle"] == pytest.approx(0.5 / 0.8)
    assert result["top1"]["mean"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert "fraction_of_oracle" not in result["top1"]  # no reference given for it
    assert not any("ceiling" in key for entry in result.values() if isinstance(entry, dict) for key in entry)


def test_fraction_of_oracle_is_a_plain_ratio_that_may_exceed_one():
    # The reference is an estimate: a model above it gets a fraction above 1, not a clipped value.
    result = Evaluator(["opa"], reference={"opa": 0.4}, n_bootstrap=10).eval(_input())
    assert result["opa"]["fraction_of_oracle"] == pytest.approx(0.5 / 0.4)
    for reference in (None, {}, {"opa": None}, {"opa": 0.0}):  # no usable reference: no fraction
        assert "fraction_of_oracle" not in Evaluator(["opa"], reference=reference, n_bootstrap=10).eval(_input())["opa"]
    with pytest.raises(ValueError, match="reference for unknown metric"):
        Evaluator(["opa"], reference={"accuracy": 0.9})
    assert "fraction_of_oracle" in Evaluator.expected_output_format


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("y_score"), "missing key"),
    (lambda d: d.__setitem__("y_score", [1.0]), "equal length"),
    (lambda d: d.__setitem__("y_true_latency", [0.0] + d["y_true_latency"][1:]), "> 0"),
    (lambda d: d.__setitem__("y_score", [np.nan] + d["y_score"][1:]), "non-finite"),
])
def test_bad_input_is_explained(mutate, message):
    data = _input()
    mutate(data)
    with pytest.raises(EvaluatorInputError, match=message):
        Evaluator().eval(data)


def test_unknown_metric_and_nothing_to_rank():
    with pytest.raises(ValueError, match="valid: opa"):
        Evaluator(["opa", "accuracy"])
    with pytest.raises(EvaluatorInputError, match="nothing to rank"):
        Evaluator().eval({"task_id": ["a"], "y_true_latency": [1.0], "y_score": [1.0]})
    assert "y_score" in Evaluator.expected_input_format
