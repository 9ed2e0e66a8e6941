"""The floors: random and FLOP-count scores, on hand-made records (no TVM needed)."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from cwm_bench.model import Records, create_model, load_checkpoint


def make_records(features: list[np.ndarray | None], latency: list[float] | None = None,
                 tasks: list[str] | None = None, flops: float = 1e6) -> Records:
    """Records from per-program store matrices ((num_stores, 164) arrays; None = no features)."""
    n = len(features)
    tasks = tasks or ["t0"] * n
    columns = {
        "record_id": [f"r{i}" for i in range(n)],
        "workload_id": tasks,
        "trace_json": ["[[],[]]"] * n,
        "actions": [[] for _ in range(n)],
        "features": [None if f is None else np.asarray(f, np.float32).tolist() for f in features],
        "hw_kind": ["cpu"] * n, "hw_name": ["test"] * n, "hw_arch": ["x"] * n, "hw_num_cores": [2] * n,
    }
    if latency is not None:
        columns["latency_s"] = latency
    table = pa.table(columns)
    names = sorted(set(tasks))
    workloads = pa.table({"workload_id": names, "flops": [flops] * len(names),
                          "networks": pa.array([[] for _ in names], pa.list_(pa.struct([("network", pa.string()),
                                                                                          ("weight", pa.int64())])))})
    return Records(table, workloads)


def store(float_add_sub: float = 0, float_mul: float = 0) -> np.ndarray:
    row = np.zeros(164, np.float32)
    row[1], row[2] = np.log2(float_add_sub + 1), np.log2(float_mul + 1)  # slog, as TVM stores them
    return row


def test_random_is_seeded_uniform_and_order_independent():
    records = make_records([np.zeros((1, 164))] * 50)
    a = create_model("random", seed=3).score(records)
    assert a.dtype == np.float64 and ((a >= 0) & (a < 1)).all() and len(set(a)) == 50
    assert np.array_equal(a, create_model("random", seed=3).score(records))
    assert not np.array_equal(a, create_model("random", seed=4).score(records))
    reversed_records = records.take(list(range(49, -1, -1)))
    assert np.array_equal(create_model("random", seed=3).score(reversed_records), a[::-1])


def test_flops_prefers_less_float_work_and_falls_back_to_workload_flops():
    small = np.stack([store(float_add_sub=1000, float_mul=1000)])
    padded = np.stack([store(float_add_sub=1200, float_mul=1200), store()])  # imperfect tiles: more work
    scores = create_model("flops").score(make_records([small, padded, None], flops=5e6))
    assert np.allclose(scores, [-2000, -2400, -5e6], rtol=1e-4)
    assert scores[0] > scores[1]


def test_floors_need_no_fit_and_checkpoint_only_their_config(tmp_path):
    records = make_records([np.stack([store(10, 10)]), np.stack([store(20, 20)])], latency=[1e-3, 2e-3])
    for name in ("random", "flops"):
        model = create_model(name)
        model.fit(records)  # a no-op, but part of the contract
        folder = tmp_path / name
        model.save(str(folder))
        assert os.listdir(folder) == ["config.json"]
        assert np.array_equal(load_checkpoint(str(folder)).score(records), model.score(records))
