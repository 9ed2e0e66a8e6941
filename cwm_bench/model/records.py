"""`Records`: what every cost model reads, offline (a dataset split) and online (live candidates).

A model sees candidate programs only through these columns, so offline scoring, MetaSchedule's live
search and the leaderboard feed models the same way. Labels (`latency_s`) are absent online and
hidden on leaderboard test sets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

INPUT_COLUMNS = ("record_id", "workload_id", "trace_json", "actions", "features", "hw_kind", "hw_name",
                 "hw_arch", "hw_num_cores")
LABEL_COLUMN = "latency_s"


@dataclass
class Records:
    """Candidate programs (`table`: INPUT_COLUMNS, plus `latency_s` when labelled) and their tasks
    (`workloads`: the workloads table: family, flops, mod_json, ...)."""

    table: pa.Table
    workloads: pa.Table

    def __post_init__(self) -> None:
        missing = [c for c in INPUT_COLUMNS if c not in self.table.column_names]
        if missing:
            raise ValueError(f"records lack column(s) {missing}; a cost model needs {list(INPUT_COLUMNS)}")

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def labelled(self) -> bool:
        return LABEL_COLUMN in self.table.column_names

    def latency(self) -> np.ndarray:
        if not self.labelled:
            raise ValueError("these records carry no labels (latency_s is hidden)")
        return self.table.column(LABEL_COLUMN).to_numpy(zero_copy_only=False).astype(np.float64)

    def task_ids(self) -> np.ndarray:
        return np.asarray(self.table.column("workload_id").to_pylist())

    def workload_column(self, name: str) -> np.ndarray:
        """A workloads-table column aligned with the records (e.g. "flops", "family")."""
        lookup = dict(zip(self.workloads.column("workload_id").to_pylist(),
                          self.workloads.column(name).to_pylist(), strict=True))
        return np.asarray([lookup[w] for w in self.table.column("workload_id").to_pylist()])

    def features(self) -> list[np.ndarray]:
        """Per-store features, one (num_stores, 164) float32 array per record."""
        return [np.asarray(f, dtype=np.float32).reshape(-1, 164) if f else np.zeros((0, 164), np.float32)
                for f in self.table.column("features").to_pylist()]

    def actions(self) -> list[list[dict]]:
        return self.table.column("actions").to_pylist()

    def take(self, indices) -> Records:
        return Records(self.table.take(pa.array(indices, type=pa.int64())), self.workloads)

    def sample(self, n: int, seed: int = 0) -> Records:
        """`n` records (all if fewer), picked by a seeded hash of `record_id` and kept in table order.

        A function of the ids alone, as the splits are: the same records whatever the row order or
        the shards, and with one seed a smaller `n` picks a subset of a larger one's."""
        if n < 0:
            raise ValueError(f"cannot sample {n} records")
        if n >= len(self):
            return self
        # "sample:" keeps these coins apart from the within_task split's sha256(seed, record_id)
        keys = np.array([int.from_bytes(hashlib.sha256(f"sample:{seed}:{i}".encode()).digest()[:8], "big")
                         for i in self.table.column("record_id").to_pylist()], dtype=np.uint64)
        return self.take(np.sort(np.argsort(keys, kind="stable")[:n]))

    def without_labels(self) -> Records:
        keep = [c for c in self.table.column_names if c != LABEL_COLUMN]
        return Records(self.table.select(keep), self.workloads)


def load_records(root: str, split_column: str | None = None, split: str | None = None,
                 ok_only: bool = True) -> Records:
    """Records of a dataset folder (collection or release layout), optionally one split of one scheme:
    `load_records(dir, "split_within_task", "train")`."""
    from cwm_bench.rows.reader import read_table

    table = read_table(root, "records")
    if ok_only:
        table = table.filter(pc.equal(table.column("status"), "ok"))
    if split_column is not None:
        if split_column not in table.column_names:
            raise ValueError(f"{root} has no split column {split_column!r} (a release folder has "
                             f"split_within_task, split_by_network, split_by_operator)")
        table = table.filter(pc.equal(table.column(split_column), split))
    return Records(table, read_table(root, "workloads"))
