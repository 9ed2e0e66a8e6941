"""The sealed seam: a model receives its declared input columns and nothing else, offline and live."""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from cwm_bench.model import ALL_INPUTS, CostModel, Records, create_model, load_side, model_names
from cwm_bench.model.records import INPUT_COLUMNS, input_columns, seal
from cwm_bench.rows.schema import RECORDS

RELEASE = os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "cwm-bench-h200-v0")
FAST = {
    "ansor-xgb": {"num_boost_round": 20, "early_stopping_rounds": 5, "nthread": 1},
    "ansor-xgb-rank": {"num_boost_round": 20, "early_stopping_rounds": 5, "nthread": 1},
    "tenset-mlp": {"hidden": 32, "epochs": 1},
    "tlp": {"d_model": 32, "ff": 64, "epochs": 1, "max_len": 64},
    "world-model": {"d_model": 16, "epochs": 2, "max_steps": 64},
}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


class Peeking(CostModel):
    """Tries every way to read a label: the table's columns, whatever they are."""

    trainable: ClassVar[bool] = False
    seen: ClassVar[list[list[str]]] = []

    def fit(self, train: Records, progress: bool = True) -> None:
        pass

    def score(self, records: Records) -> np.ndarray:
        Peeking.seen.append(records.table.column_names)
        names = records.table.column_names
        if "latencies_s" in names:  # the leak the seam closes: -median(latencies_s) scored OPA 1.0
            return -np.array([np.median(v) for v in records.table.column("latencies_s").to_pylist()])
        if "latency_s" in names:
            return -records.table.column("latency_s").to_numpy()
        return np.zeros(len(records))


def test_records_refuse_any_column_outside_the_seam():
    table = pa.table({"workload_id": ["w"], "latencies_s": [[1.0]]})
    with pytest.raises(ValueError, match=r"\['latencies_s'\] outside the model inputs"):
        Records(table, pa.table({"workload_id": ["w"]}))
    with pytest.raises(ValueError, match="declare 'features'"):
        Records(pa.table({"workload_id": ["w"]}), pa.table({"workload_id": ["w"]})).features()


@pytest.mark.parametrize("inputs", [set(), {"actions"}, {"features", "hardware"}, set(ALL_INPUTS)])
def test_score_gets_exactly_the_declared_columns(inputs):
    Peeking.seen.clear()
    side = load_side(RELEASE, "within_task", "test", inputs)
    scores = Peeking().score(side.records)
    assert Peeking.seen == [list(input_columns(inputs))]
    assert not np.any(scores)  # nothing to peek at
    forbidden = {"latency_s", "latencies_s", "status", "origin", "measured_at", "protocol", "split_within_task",
                 "split_by_network", "split_by_operator", "error", "seed", "target", "program_hash"}
    assert not forbidden & set(Peeking.seen[0])
    assert side.records.labelled is False and side.labelled().labelled  # fit gets latency_s, score never


def test_sealed_columns_have_the_dataset_types():
    side = load_side(RELEASE, "within_task", "test", ALL_INPUTS)
    assert side.records.table.column_names == list(INPUT_COLUMNS)
    for field in side.records.table.schema:
        assert field.type == RECORDS.field(field.name).type, field.name


def _scrambled_copy(tmp_path, scheme: str) -> str:
    """The release with every non-input column permuted among the ok rows of `scheme`'s test side."""
    out = tmp_path / "scrambled"
    shutil.copytree(RELEASE, out)
    for path in sorted((out / "data" / "records").glob("*.parquet")):
        table = pq.read_table(path)
        rows = np.flatnonzero((table.column(f"split_{scheme}").to_numpy(zero_copy_only=False) == "test")
                              & (table.column("status").to_numpy(zero_copy_only=False) == "ok"))
        rng = np.random.default_rng(0)
        for name in table.column_names:
            if name in INPUT_COLUMNS or name in ("status", f"split_{scheme}"):
                continue
            values = table.column(name).to_pylist()
            moved = [values[i] for i in rng.permutation(rows)]
            for i, v in zip(rows, moved, strict=True):
                values[i] = v
            table = table.set_column(table.schema.get_field_index(name), table.schema.field(name),
                                     pa.array(values, table.schema.field(name).type))
        pq.write_table(table, path)
    # a re-published release: its checksums match the scrambled files (else the integrity gate refuses it)
    lines = []
    for path in sorted((out / "data").rglob("*.parquet")):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(out).as_posix()}")
    (out / "checksums.sha256").write_text("\n".join(lines) + "\n")
    return str(out)


@pytest.mark.parametrize("name", [*model_names(), "peeking"])
def test_scrambling_every_non_input_column_of_the_test_side_leaves_scores_unchanged(name, tmp_path):
    if name == "peeking":
        model = Peeking()
    else:
        model = create_model(name, **FAST.get(name, {}))
        if model.trainable:
            model.fit(load_side(RELEASE, "within_task", "train", model.inputs).sample(300).labelled(), progress=False)
    scrambled = _scrambled_copy(tmp_path, "within_task")
    original = load_side(RELEASE, "within_task", "test", model.inputs)
    changed = load_side(scrambled, "within_task", "test", model.inputs)
    assert not np.array_equal(original.latency_s, changed.latency_s)  # the labels did move
    assert original.records.table.equals(changed.records.table)
    np.testing.assert_array_equal(model.score(original.records), model.score(changed.records))


def test_seal_refuses_a_missing_column_and_drops_the_rest():
    table = pa.table({"workload_id": ["w"], "record_id": ["r"], "latency_s": [1.0], "status": ["ok"]})
    assert seal(table, {"record_id"}).column_names == ["record_id", "workload_id"]
    assert seal(table, {"record_id"}, labelled=True).column_names == ["record_id", "workload_id", "latency_s"]
    with pytest.raises(ValueError, match=r"\['features'\] missing"):
        seal(table, {"features"})
    with pytest.raises(ValueError, match="unknown input group"):
        seal(table, {"latency"})


def test_ok_records_without_a_label_are_refused_not_dropped(tmp_path):
    out = tmp_path / "nolabel"
    shutil.copytree(RELEASE, out)
    path = next((out / "data" / "records").glob("*.parquet"))
    table = pq.read_table(path)
    latency = table.column("latency_s").to_pylist()
    latency[table.column("status").to_pylist().index("ok")] = None
    pq.write_table(table.set_column(table.schema.get_field_index("latency_s"), "latency_s",
                                    pa.array(latency, pa.float64())), path)
    (out / "checksums.sha256").write_text("".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out).as_posix()}\n"
        for p in sorted((out / "data").rglob("*.parquet"))))
    with pytest.raises(ValueError, match=r"1 ok record\(s\) without a positive latency_s"):
        load_side(str(out), "all", "all", {"record_id"})
