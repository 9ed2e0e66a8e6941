"""One side of a split, as the harness holds it: the sealed model inputs apart from what only the
harness may see (labels, record ids, task weights).

    side = load_side("release/cpu-v0", "by_network", "test", inputs=model.inputs)
    scores = model.score(side.records)              # sealed: declared input columns only
    metrics = evaluate(side.latency_s, scores)     # labels never pass through the model

Only the columns the model declared are read from Parquet (per-store features are most of a
dataset's bytes), so a model that reads only actions also loads faster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cwm_bench.model.records import ALL_INPUTS, LABEL_COLUMN, Records, hash_sample, input_columns, seal
from cwm_bench.splits import SPLIT_COLUMNS


@dataclass
class SplitSide:
    """`records`: what a model may read (sealed). The rest is the harness's: labels, ids, task weights."""

    records: Records
    latency_s: np.ndarray
    record_ids: list[str]
    scheme: str  # "all" or a split scheme
    side: str  # "all", "train" or "test"

    def __len__(self) -> int:
        return len(self.record_ids)

    @property
    def task_ids(self) -> np.ndarray:
        return self.records.task_ids()

    def labelled(self) -> Records:
        """The inputs with `latency_s`: what `fit` receives."""
        return Records(self.records.table.append_column(LABEL_COLUMN, pa.array(self.latency_s, pa.float64())),
                       self.records.workloads)

    def task_weights(self) -> np.ndarray:
        """Each record's task weight: how often its task occurs in its networks (1 for operator tasks)."""
        workloads = self.records.workloads
        weight = {w: float(sum(u["weight"] for u in nets)) if nets else 1.0
                  for w, nets in zip(workloads.column("workload_id").to_pylist(),
                                     workloads.column("networks").to_pylist(), strict=True)}
        return np.array([weight[w] for w in self.task_ids], dtype=np.float64)

    def sample(self, n: int, seed: int = 0) -> SplitSide:
        """`n` records by a seeded hash of their ids (`hash_sample`), the same whatever the inputs."""
        keep = hash_sample(self.record_ids, n, seed)
        if len(keep) == len(self):
            return self
        return SplitSide(self.records.take(keep), self.latency_s[keep], [self.record_ids[i] for i in keep],
                         self.scheme, self.side)


def load_side(root: str, scheme: str, side: str, inputs: Iterable[str] = ALL_INPUTS) -> SplitSide:
    """The ok records of a dataset folder (collection or release): `scheme` "all" (every record, no
    split column needed) or a split scheme's `side` ("train"/"test"). Reads only the declared inputs."""
    from cwm_bench.rows.reader import read_table, table_files

    if scheme != "all" and scheme not in SPLIT_COLUMNS:
        raise ValueError(f"unknown split scheme {scheme!r}; valid: all, {', '.join(SPLIT_COLUMNS)}")
    split_column = SPLIT_COLUMNS.get(scheme)
    columns = sorted(set(input_columns(inputs)) | {"record_id", "status", LABEL_COLUMN})
    if split_column is not None:
        files = table_files(root, "records")
        if files and split_column not in pq.ParquetFile(files[0]).schema_arrow.names:
            raise ValueError(f"{root} has no split column {split_column!r} (a release folder has "
                             f"split_within_task, split_by_network, split_by_operator)")
        columns.append(split_column)
    table = read_table(root, "records", columns=columns)
    table = table.filter(pc.equal(table.column("status"), "ok"))
    if split_column is not None:
        table = table.filter(pc.equal(table.column(split_column), side))
    workloads = read_table(root, "workloads")
    tasks = pa.array(sorted(set(table.column("workload_id").to_pylist())), pa.string())
    workloads = workloads.filter(pc.is_in(workloads.column("workload_id"), value_set=tasks))
    latency = table.column(LABEL_COLUMN).to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~(np.isfinite(latency) & (latency > 0))
    if bad.any():
        first = table.column("record_id")[int(np.flatnonzero(bad)[0])].as_py()
        raise ValueError(f"{root}: {int(bad.sum())} ok record(s) without a positive latency_s (first: {first}); "
                         "`cwm-bench validate` lists them")
    return SplitSide(Records(seal(table, inputs), workloads), latency, table.column("record_id").to_pylist(),
                     scheme, "all" if scheme == "all" else side)


def load_records(root: str, split_column: str | None = None, split: str | None = None,
                 inputs: Iterable[str] = ALL_INPUTS) -> Records:
    """Labelled records of a dataset folder, optionally one side of one scheme, as `fit` gets them:
    `load_records(dir, "split_within_task", "train")`."""
    scheme = "all" if split_column is None else split_column.removeprefix("split_")
    return load_side(root, scheme, split or "all", inputs).labelled()
