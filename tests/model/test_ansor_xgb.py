"""The Ansor/MetaSchedule XGBoost baselines: they learn, score finitely, and round-trip through JSON."""

from __future__ import annotations

import numpy as np
import pytest

from cwm_bench.metrics.ranking import pairwise_accuracy
from cwm_bench.model import create_model
from tests.model.test_floors import make_records

FAST = {"num_boost_round": 40, "early_stopping_rounds": 10, "nthread": 1}  # one thread: fast on tiny data


def _one_informative_column(seed: int = 0):
    """3 tasks x 40 programs of 2 stores; column 20 alone sets the latency, the rest is noise.

    Same store count everywhere: a pack-sum row cannot see how many stores its program has."""
    rng = np.random.default_rng(seed)
    features, latency, tasks = [], [], []
    for task in ("a", "b", "c"):
        for _ in range(40):
            stores = rng.uniform(0, 10, size=(2, 164)).astype(np.float32)
            key = rng.uniform(0, 10)
            stores[:, 20] = key
            features.append(stores)
            latency.append(1e-4 * (1 + key) * (2 if task == "b" else 1))
            tasks.append(task)
    return make_records(features, latency, tasks)


@pytest.mark.parametrize("name", ["ansor-xgb", "ansor-xgb-rank"])
def test_learns_an_ordering_a_feature_gives(name):
    records = _one_informative_column()
    model = create_model(name, **{**FAST, "num_boost_round": 200, "early_stopping_rounds": 30})
    model.fit(records, progress=False)
    scores, latency, tasks = model.score(records), records.latency(), records.task_ids()
    opa = np.mean([pairwise_accuracy(latency[tasks == t], scores[tasks == t]) for t in np.unique(tasks)])
    assert opa > 0.9


def test_unknown_config_and_unfitted_use_fail_clearly():
    with pytest.raises(ValueError, match="unknown ansor-xgb option"):
        create_model("ansor-xgb", max_dept=3)
    with pytest.raises(RuntimeError, match="not fitted"):
        create_model("ansor-xgb").score(_one_informative_column())
