"""Three train/test splits, each a string column ("train"/"test") on the records table.

All three are functions of a row's own ids (and the seed), never of row order or of the other rows,
so adding records to a release later never moves an existing record to the other side.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

WITHIN_TASK_TEST_FRACTION = 0.1
# TenSet-style hold-out: tasks that only these networks contain are never seen in training.
HOLDOUT_NETWORKS = frozenset({"resnet50", "bert_base_layer"})
HOLDOUT_FAMILIES = frozenset({"depthwise_conv2d", "conv2d_transpose"})

SPLIT_SCHEMES: dict[str, str] = {
    "within_task": "per task, a seeded random 90/10 split of its records (every task is seen in training)",
    "by_network": "test = tasks that occur only in the networks " + ", ".join(sorted(HOLDOUT_NETWORKS))
                  + " (in no other network, not an operator); everything else train",
    "by_operator": "test = every task of the families " + ", ".join(sorted(HOLDOUT_FAMILIES))
                   + "; everything else train",
}
SPLIT_COLUMNS = {scheme: f"split_{scheme}" for scheme in SPLIT_SCHEMES}


def within_task_is_test(record_id: str, seed: int = 0) -> bool:
    """A record's own coin: sha256(seed, record_id) as a uniform number in [0, 1).

    record_id is sha1(workload_id, program) and equal on every hardware, so the same program falls on
    the same side in every release; the split is per task in expectation (10% of each task's records).
    """
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < WITHIN_TASK_TEST_FRACTION


def by_network_is_test(networks: list[dict] | None) -> bool:
    """Test iff the task belongs to at least one network and every network holding it is held out."""
    names = {n["network"] for n in networks or []}
    return bool(names) and names <= HOLDOUT_NETWORKS


def by_operator_is_test(family: str | None) -> bool:
    return family in HOLDOUT_FAMILIES


def assign_splits(records: pa.Table, workloads: pa.Table, seed: int = 0) -> pa.Table:
    """`records` plus the columns split_within_task, split_by_network, split_by_operator.

    Raises ValueError when a record's workload_id is missing from `workloads` (its task-level
    splits would be undefined).
    """
    tasks = {w["workload_id"]: w for w in workloads.select(["workload_id", "family", "networks"]).to_pylist()}
    record_ids = records.column("record_id").to_pylist()
    workload_ids = records.column("workload_id").to_pylist()
    missing = sorted(set(workload_ids) - tasks.keys())
    if missing:
        raise ValueError(f"{len(missing)} workload id(s) of records are not in the workloads table: "
                         + ", ".join(missing[:5]))
    network_test = {wid: by_network_is_test(w["networks"]) for wid, w in tasks.items()}
    operator_test = {wid: by_operator_is_test(w["family"]) for wid, w in tasks.items()}
    columns = {
        "within_task": [within_task_is_test(rid, seed) for rid in record_ids],
        "by_network": [network_test[wid] for wid in workload_ids],
        "by_operator": [operator_test[wid] for wid in workload_ids],
    }
    out = records.drop_columns([c for c in SPLIT_COLUMNS.values() if c in records.column_names])
    for scheme, is_test in columns.items():
        out = out.append_column(SPLIT_COLUMNS[scheme],
                                pa.array(["test" if t else "train" for t in is_test], pa.string()))
    return out
