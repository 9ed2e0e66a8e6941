"""The Evaluator's contract: input checks, per-task metrics, aggregation, ceiling fractions."""

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
    result = Evaluator(["opa", "top1"], ceiling={"opa": 0.8}, n_bootstrap=200).eval(_input())
    assert result["num_tasks"] == 2 and result["num_programs"] == 6
    assert result["per_task"]["a"]["opa"] == 1.0 and result["per_task"]["b"]["opa"] == 0.0
    assert result["opa"]["mean"] == 0.5
    assert result["opa"]["weighted_mean"] == pytest.approx(0.75)  # (3*1 + 1*0) / 4
    assert 0.0 <= result["opa"]["ci_low"] <= 0.5 <= result["opa"]["ci_high"] <= 1.0
    assert result["opa"]["fraction_of_ceiling"] == pytest.approx(0.5 / 0.8)
    assert result["top1"]["mean"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert "fraction_of_ceiling" not in result["top1"]


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
