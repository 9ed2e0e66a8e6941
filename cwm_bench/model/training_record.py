"""`training.json`, beside a checkpoint: what `cwm-bench train` fitted it on.

Written by `train`, read by `evaluate` (copied, ids counted, into the result's notes) and by the
contamination check (`contamination.py`, which compares its ids with the evaluated side). A
fine-tuned checkpoint nests the record of the checkpoint it started from under `init_training`.
"""

from __future__ import annotations

import json
import os

from cwm_bench.model.base import CheckpointError, read_json_object

TRAINING_FILE = "training.json"
ID_LISTS = ("workload_ids", "record_ids")


def read_training(checkpoint: str) -> dict | None:
    """A checkpoint's training record (None without one); CheckpointError, one line, when malformed."""
    path = os.path.join(checkpoint, TRAINING_FILE)
    if not os.path.exists(path):
        return None
    training = read_json_object(path)
    for key in ID_LISTS:
        if key in training and not (isinstance(training[key], list) and all(isinstance(i, str) for i in training[key])):
            raise CheckpointError(f"{path}: {key!r} must be a list of ids")
    return training


def training_record(data_dir: str, split: str, trained, init_dir: str | None, max_train_records: int | None,
                    seed: int, digest: str) -> dict:
    """What a checkpoint was fitted on: the dataset (id, digest), the split and side, the `SplitSide`
    `trained` (counts, and the task and record ids the contamination check compares), the sample,
    and through `init_dir` the record of the checkpoint training started from."""
    return {"dataset_id": os.path.basename(os.path.normpath(os.path.abspath(data_dir))),
            "dataset_sha256": digest, "split": split,
            "side": "all" if split == "all" else "train", "records": len(trained),
            "tasks": len(set(trained.task_ids)), "max_train_records": max_train_records,
            "sample_seed": seed if max_train_records is not None else None,
            "init": os.path.abspath(init_dir) if init_dir else None,
            "init_training": read_training(init_dir) if init_dir else None,
            "hardware": dataset_hardware(data_dir),
            "workload_ids": sorted(set(trained.task_ids.tolist())),
            "record_ids": sorted(trained.record_ids)}


def dataset_hardware(data_dir: str) -> list[dict]:
    """The hardware a dataset's records were measured on: one {hw_id, hw_name, hw_arch} per machine kind."""
    from cwm_bench.rows.reader import read_table

    table = read_table(data_dir, "records", ["hw_id", "hw_name", "hw_arch"])
    rows = {tuple(r.values()): r for r in table.group_by(["hw_id", "hw_name", "hw_arch"]).aggregate([]).to_pylist()}
    return [rows[k] for k in sorted(rows)]


def write_training(folder: str, record: dict) -> None:
    with open(os.path.join(folder, TRAINING_FILE), "w") as handle:
        json.dump(record, handle, indent=1, sort_keys=True)


def training_summary(training: dict) -> dict:
    """A training record as a result file carries it: id lists replaced by their counts (the lists
    stay beside the checkpoint; a result file stays small)."""
    out = {k: v for k, v in training.items() if k not in (*ID_LISTS, "init_training")}
    for key in ID_LISTS:
        if key in training:
            out[f"num_{key}"] = len(training[key])
    if training.get("init_training"):
        out["init_training"] = training_summary(training["init_training"])
    return out
