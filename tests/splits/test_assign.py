"""Split assignment on hand-made tables: known answers, determinism, stability under appends."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cwm_bench.rows.schema import WORKLOADS
from cwm_bench.splits import SPLIT_COLUMNS, SPLIT_SCHEMES, assign_splits


def _workloads() -> pa.Table:
    def task(wid, family, networks):
        return {"workload_id": wid, "task_name": wid, "family": family, "source": "network" if networks else
                "operator", "networks": [{"network": n, "weight": 1} for n in networks], "flops": 1.0,
                "arg_names": [], "arg_shapes": [], "arg_dtypes": [], "mod_json": "", "tvmscript": ""}

    return pa.Table.from_pylist([
        task("w_r50", "conv2d", ["resnet50"]),                       # only a held-out network: test
        task("w_bert", "matmul", ["bert_base_layer", "resnet50"]),   # only held-out networks: test
        task("w_shared", "conv2d", ["resnet18", "resnet50"]),        # also in resnet18: train
        task("w_vit", "softmax", ["vit_b16_block"]),
        task("w_dw", "depthwise_conv2d", []),                       # an operator: by_network train
        task("w_tr", "conv2d_transpose", []),
    ], schema=WORKLOADS)


def _records(n: int, workload_ids: list[str]) -> pa.Table:
    return pa.table({"record_id": [f"r{i:02d}" for i in range(n)],
                     "workload_id": [workload_ids[i % len(workload_ids)] for i in range(n)],
                     "latency_s": [float(i) for i in range(n)]})


WIDS = ["w_r50", "w_bert", "w_shared", "w_vit", "w_dw", "w_tr"]


def _split(table: pa.Table, scheme: str) -> dict[str, str]:
    return dict(zip(table["record_id"].to_pylist(), table[SPLIT_COLUMNS[scheme]].to_pylist(), strict=True))


def test_known_answers():
    out = assign_splits(_records(20, WIDS), _workloads(), seed=0)
    assert out.column_names[:3] == ["record_id", "workload_id", "latency_s"]
    assert set(SPLIT_COLUMNS.values()) <= set(out.column_names) and set(SPLIT_SCHEMES) == set(SPLIT_COLUMNS)
    within = _split(out, "within_task")
    assert {r for r, s in within.items() if s == "test"} == {"r01", "r09", "r14", "r17", "r18"}
    by_task = {}
    for wid, net, op in zip(out["workload_id"].to_pylist(), out["split_by_network"].to_pylist(),
                            out["split_by_operator"].to_pylist(), strict=True):
        by_task[wid] = (net, op)
    assert by_task == {"w_r50": ("test", "train"), "w_bert": ("test", "train"), "w_shared": ("train", "train"),
                       "w_vit": ("train", "train"), "w_dw": ("train", "test"), "w_tr": ("train", "test")}
    other_seed = _split(assign_splits(_records(20, WIDS), _workloads(), seed=1), "within_task")
    assert {r for r, s in other_seed.items() if s == "test"} == {"r00", "r04", "r06"}


def test_deterministic_and_independent_of_row_order():
    records = _records(300, WIDS)
    first = assign_splits(records, _workloads(), seed=3)
    assert first.equals(assign_splits(records, _workloads(), seed=3))
    shuffled = assign_splits(records.take(list(reversed(range(300)))), _workloads(), seed=3)
    for scheme in SPLIT_SCHEMES:
        assert _split(shuffled, scheme) == _split(first, scheme)
    share = sum(s == "test" for s in _split(first, "within_task").values()) / 300
    assert 0.05 < share < 0.15


def test_adding_records_moves_no_existing_record():
    before = assign_splits(_records(100, WIDS), _workloads())
    after = assign_splits(_records(400, WIDS), _workloads())
    for scheme in SPLIT_SCHEMES:
        old = _split(before, scheme)
        assert {r: s for r, s in _split(after, scheme).items() if r in old} == old


def test_by_network_test_tasks_never_occur_in_train():
    out = assign_splits(_records(200, WIDS), _workloads())
    test = {w for w, s in zip(out["workload_id"].to_pylist(), out["split_by_network"].to_pylist(), strict=True)
            if s == "test"}
    train = {w for w, s in zip(out["workload_id"].to_pylist(), out["split_by_network"].to_pylist(), strict=True)
             if s == "train"}
    assert test == {"w_r50", "w_bert"} and not test & train
    # and no test task belongs to a network that is trained on
    networks = {w["workload_id"]: {n["network"] for n in w["networks"]} for w in _workloads().to_pylist()}
    assert all(networks[w] <= {"resnet50", "bert_base_layer"} for w in test)


def test_existing_split_columns_are_replaced_and_unknown_workloads_refused():
    once = assign_splits(_records(10, WIDS), _workloads(), seed=0)
    again = assign_splits(once, _workloads(), seed=1)
    assert again.column_names == once.column_names
    with pytest.raises(ValueError, match="not in the workloads table: w_missing"):
        assign_splits(_records(3, ["w_missing"]), _workloads())
