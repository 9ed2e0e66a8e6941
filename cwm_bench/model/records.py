"""`Records`: the sealed seam through which every cost model sees candidate programs.

Offline (a dataset side, `cwm_bench.model.split_side`) and online (live candidates in MetaSchedule,
`cwm_bench.model.metaschedule`) build the table with `seal()`, so a model gets the same column
names, types and values for the same program on both paths, and nothing else: no raw timings,
status, origin, split columns, times or protocol. `fit` additionally gets `latency_s`.

A model declares the input groups it reads (`CostModel.inputs`); only those are computed and passed:

| group       | columns                                                                            |
|-------------|------------------------------------------------------------------------------------|
| (always)    | workload_id                                                                        |
| record_id   | record_id (live: a structural hash of each candidate)                              |
| trace       | trace_json                                                                         |
| actions     | actions (the structured action sequence)                                           |
| features    | features (MetaSchedule per-store features: the costly one live)                    |
| hardware    | hw_id, hw_kind, hw_name, hw_arch, hw_num_cores, hw_isa, hw_descriptor (full JSON)  |

Every model also gets the workloads table of its tasks (family, flops, mod_json, ...).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from cwm_bench.rows.schema import FEATURE_DIM, RECORDS

HARDWARE_COLUMNS = ("hw_id", "hw_kind", "hw_name", "hw_arch", "hw_num_cores", "hw_isa", "hw_descriptor")
INPUT_GROUPS: dict[str, tuple[str, ...]] = {
    "record_id": ("record_id",),
    "trace": ("trace_json",),
    "actions": ("actions",),
    "features": ("features",),
    "hardware": HARDWARE_COLUMNS,
}
ALL_INPUTS = frozenset(INPUT_GROUPS)
ALWAYS_COLUMNS = ("workload_id",)
LABEL_COLUMN = "latency_s"
# Every column a model may ever see, in the order `seal` puts them.
INPUT_COLUMNS = ("record_id", "workload_id", "trace_json", "actions", "features", *HARDWARE_COLUMNS)


def check_inputs(inputs: Iterable[str]) -> frozenset[str]:
    """`inputs` as a frozenset, or ValueError naming an unknown group."""
    inputs = frozenset(inputs)
    unknown = sorted(inputs - ALL_INPUTS)
    if unknown:
        raise ValueError(f"unknown input group(s) {unknown}; valid: {sorted(ALL_INPUTS)}")
    return inputs


def input_columns(inputs: Iterable[str]) -> tuple[str, ...]:
    """The columns a model that declares `inputs` receives, in seam order."""
    wanted = {c for g in check_inputs(inputs) for c in INPUT_GROUPS[g]} | set(ALWAYS_COLUMNS)
    return tuple(c for c in INPUT_COLUMNS if c in wanted)


def seal(table: pa.Table, inputs: Iterable[str], labelled: bool = False) -> pa.Table:
    """The seam: exactly the columns of `inputs` (+ `latency_s` when `labelled`), in seam order, cast to
    the dataset schema's types. Any other column of `table` is dropped; a missing one is an error."""
    columns = list(input_columns(inputs)) + ([LABEL_COLUMN] if labelled else [])
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"cannot build model inputs: column(s) {missing} missing")
    return pa.table({c: table.column(c).cast(RECORDS.field(c).type) for c in columns})


def hash_sample(ids: list[str], n: int, seed: int) -> np.ndarray:
    """Indices of `n` of `ids` (all if fewer) by a seeded hash of each id, in their original order.

    A function of the ids alone, as the splits are: the same picks whatever the row order or the
    shards, and with one seed a smaller `n` picks a subset of a larger one's."""
    if n < 0:
        raise ValueError(f"cannot sample {n} records")
    if n >= len(ids):
        return np.arange(len(ids))
    # "sample:" keeps these coins apart from the within_task split's sha256(seed, record_id)
    keys = np.array([int.from_bytes(hashlib.sha256(f"sample:{seed}:{i}".encode()).digest()[:8], "big")
                     for i in ids], dtype=np.uint64)
    return np.sort(np.argsort(keys, kind="stable")[:n])


@dataclass
class Records:
    """Candidate programs as a model sees them (`table`: sealed input columns, plus `latency_s` when
    labelled) and their tasks (`workloads`: the workloads table: family, flops, mod_json, ...).

    Constructing one with any column outside the seam is an error: labels cannot leak by accident."""

    table: pa.Table
    workloads: pa.Table

    def __post_init__(self) -> None:
        allowed = set(INPUT_COLUMNS) | {LABEL_COLUMN}
        extra = [c for c in self.table.column_names if c not in allowed]
        if extra:
            raise ValueError(f"records carry column(s) {extra} outside the model inputs "
                             f"{list(INPUT_COLUMNS)} (+ {LABEL_COLUMN} for fit); build them with seal()")
        if "workload_id" not in self.table.column_names:
            raise ValueError("records lack workload_id; a cost model ranks within tasks")

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def inputs(self) -> frozenset[str]:
        """The input groups these records carry."""
        names = set(self.table.column_names)
        return frozenset(g for g, cols in INPUT_GROUPS.items() if set(cols) <= names)

    @property
    def labelled(self) -> bool:
        return LABEL_COLUMN in self.table.column_names

    def column(self, name: str) -> pa.ChunkedArray:
        """An input column as Arrow; a clear error when the model did not declare its group."""
        if name not in self.table.column_names:
            group = next((g for g, cols in INPUT_GROUPS.items() if name in cols), None)
            if group is None:
                raise ValueError(f"{name!r} is not a model input; inputs: {list(INPUT_COLUMNS)}")
            raise ValueError(f"these records carry no {name!r}: declare {group!r} in the model's `inputs` "
                             f"(it has {sorted(self.inputs)})")
        return self.table.column(name)

    def latency(self) -> np.ndarray:
        if not self.labelled:
            raise ValueError("these records carry no labels (latency_s is hidden)")
        return self.table.column(LABEL_COLUMN).to_numpy(zero_copy_only=False).astype(np.float64)

    def task_ids(self) -> np.ndarray:
        return np.asarray(self.table.column("workload_id").to_pylist())

    def record_ids(self) -> list[str]:
        return self.column("record_id").to_pylist()

    def workload_column(self, name: str) -> np.ndarray:
        """A workloads-table column aligned with the records (e.g. "flops", "family")."""
        lookup = dict(zip(self.workloads.column("workload_id").to_pylist(),
                          self.workloads.column(name).to_pylist(), strict=True))
        return np.asarray([lookup[w] for w in self.table.column("workload_id").to_pylist()])

    def features(self) -> list[np.ndarray]:
        """Per-store features, one (num_stores, 164) float32 array per record."""
        empty = np.zeros((0, FEATURE_DIM), np.float32)
        return [np.asarray(f, dtype=np.float32).reshape(-1, FEATURE_DIM) if f else empty
                for f in self.column("features").to_pylist()]

    def actions(self) -> list[list[dict]]:
        return self.column("actions").to_pylist()

    def traces(self) -> list[str]:
        return self.column("trace_json").to_pylist()

    def take(self, indices) -> Records:
        return Records(self.table.take(pa.array(indices, type=pa.int64())), self.workloads)

    def sample(self, n: int, seed: int = 0) -> Records:
        """`n` records (all if fewer), picked by a seeded hash of `record_id` (see `hash_sample`)."""
        if n >= len(self):
            return self
        return self.take(hash_sample(self.record_ids(), n, seed))

    def without_labels(self) -> Records:
        keep = [c for c in self.table.column_names if c != LABEL_COLUMN]
        return Records(self.table.select(keep), self.workloads)
