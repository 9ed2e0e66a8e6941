"""TenSet MLP: fits real records, checkpoints without pickle, is seeded, and learns a planted signal."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from cwm_bench.metrics import Evaluator
from cwm_bench.model import Records, create_model

FAST = {"hidden": 32, "epochs": 3, "lr": 3e-3}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def synthetic(n_tasks: int = 4, per_task: int = 32, seed: int = 0) -> Records:
    """Programs whose latency falls with feature column 5 summed over their 1-4 stores."""
    rng = np.random.default_rng(seed)
    features, latency, tasks = [], [], []
    for t in range(n_tasks):
        for _ in range(per_task):
            stores = rng.random((int(rng.integers(1, 5)), 164)).astype(np.float32)
            features.append(stores.tolist())
            latency.append(float(np.exp(-stores[:, 5].sum()) * (t + 1)))
            tasks.append(f"task{t}")
    n = len(tasks)
    table = pa.table({"record_id": [str(i) for i in range(n)], "workload_id": tasks, "trace_json": ["[]"] * n,
                      "actions": [[] for _ in range(n)], "features": features, "hw_kind": ["cpu"] * n,
                      "hw_name": ["x"] * n, "hw_arch": ["x"] * n, "hw_num_cores": [1] * n, "latency_s": latency})
    return Records(table, pa.table({"workload_id": sorted(set(tasks)), "flops": [1.0] * n_tasks}))


def opa(records: Records, score: np.ndarray) -> float:
    return Evaluator(["opa"], n_bootstrap=10).eval({"task_id": records.task_ids(), "y_true_latency": records.latency(),
                                                    "y_score": score})["opa"]["mean"]


def test_learns_a_planted_signal():
    """Fit on 32 programs of each of tasks 0-3; rank their other 16 and all of task 4, never fitted.

    Every program has its own random features, so a model that memorized the fitted ones scores
    the held-out ones at chance (0.5)."""
    records = synthetic(n_tasks=5, per_task=48)
    tasks, position = records.task_ids(), np.arange(len(records)) % 48
    fit = records.take(np.flatnonzero((tasks != "task4") & (position < 32)))
    new_programs = records.take(np.flatnonzero((tasks != "task4") & (position >= 32)))
    new_task = records.take(np.flatnonzero(tasks == "task4"))
    assert set(fit.task_ids()) == set(new_programs.task_ids()) == {"task0", "task1", "task2", "task3"}
    model = create_model("tenset-mlp", hidden=64, epochs=20, lr=3e-3, group_size=16, tasks_per_batch=2)
    model.fit(fit, progress=False)
    assert opa(new_programs, model.score(new_programs.without_labels())) > 0.7
    assert opa(new_task, model.score(new_task.without_labels())) > 0.7


def test_misuse_is_reported():
    with pytest.raises(ValueError, match="unknown tenset-mlp option"):
        create_model("tenset-mlp", hiden=3)
    with pytest.raises(RuntimeError, match="fit"):
        create_model("tenset-mlp").score(synthetic(1, 2))
