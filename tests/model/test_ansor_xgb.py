"""The Ansor/MetaSchedule XGBoost baselines: they learn, score finitely, and round-trip through JSON."""

from __future__ import annotations

import numpy as np
import pytest

from cwm_bench.metrics.ranking import pairwise_accuracy
from cwm_bench.model import create_model
from tests.model.test_floors import make_records

FAST = {"num_boost_round": 40, "early_stopping_rounds": 10, "nthread": 1}  # one thread: fast on tiny data


def _one_informative_column(seed: int = 0, tasks: tuple[str, ...] = ("a", "b", "c"), per_task: int = 40):
    """`tasks` x `per_task` programs of 2 stores; column 20 alone sets the latency, the rest is noise.

    Same store count everywhere: a pack-sum row cannot see how many stores its program has."""
    rng = np.random.default_rng(seed)
    features, latency, task_ids = [], [], []
    for task in tasks:
        for _ in range(per_task):
            stores = rng.uniform(0, 10, size=(2, 164)).astype(np.float32)
            key = rng.uniform(0, 10)
            stores[:, 20] = key
            features.append(stores)
            latency.append(1e-4 * (1 + key) * (2 if task == "b" else 1))
            task_ids.append(task)
    return make_records(features, latency, task_ids)


def _opa(records, scores: np.ndarray) -> float:
    latency, tasks = records.latency(), records.task_ids()
    return float(np.mean([pairwise_accuracy(latency[tasks == t], scores[tasks == t]) for t in np.unique(tasks)]))


@pytest.mark.parametrize("name", ["ansor-xgb", "ansor-xgb-rank"])
def test_learns_an_ordering_a_feature_gives(name):
    """Fit on 50 programs of each of tasks a-c; rank their other 30 and all of task d, never fitted.

    Every program has its own random features, so a model that memorized the fitted ones scores
    the held-out ones at chance (0.5)."""
    records = _one_informative_column(tasks=("a", "b", "c", "d"), per_task=80)
    tasks, position = records.task_ids(), np.arange(len(records)) % 80
    fit = records.take(np.flatnonzero((tasks != "d") & (position < 50)))
    new_programs = records.take(np.flatnonzero((tasks != "d") & (position >= 50)))
    new_task = records.take(np.flatnonzero(tasks == "d"))
    assert set(fit.task_ids()) == set(new_programs.task_ids()) == {"a", "b", "c"}
    model = create_model(name, **{**FAST, "num_boost_round": 200, "early_stopping_rounds": 30})
    model.fit(fit, progress=False)
    assert _opa(new_programs, model.score(new_programs.without_labels())) > 0.75
    assert _opa(new_task, model.score(new_task.without_labels())) > 0.75


def test_unknown_config_and_unfitted_use_fail_clearly():
    with pytest.raises(ValueError, match="unknown ansor-xgb option"):
        create_model("ansor-xgb", max_dept=3)
    with pytest.raises(RuntimeError, match="not fitted"):
        create_model("ansor-xgb").score(_one_informative_column())
