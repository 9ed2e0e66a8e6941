"""A tuning run's log is a dataset: every measurement a `records` row (origin `tuning`), plus a
`trials` table saying which trial of which run it was and where the batch's wall time went.

    OUT/<task>-<id8>/<label>/seed-<k>/          one run (a network run: OUT/network-<name>/...)
        manifest.json, workloads/, records/    a CWM-Bench dataset folder (readable by every command)
        trials/part-*.parquet                  trial, record_id, status, latency_s, batch, time split
        run.json                               written when the run ends: what ran, on what, how long

Each batch is written as it is measured (records first, then its trials shard, each atomic), so a
run killed at any point keeps every finished batch, and a resumed run continues from the trials
table without measuring or counting a trial twice. A program measured twice in one run (possible
after a resume) is one record and two trials.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from cwm_bench.rows.store import DatasetStore

TRIALS = pa.schema([
    ("trial", pa.int32()),  # 0-based index of the measurement within the run
    ("batch", pa.int32()),
    ("workload_id", pa.string()),
    ("record_id", pa.string()),
    ("status", pa.string()),
    ("latency_s", pa.float64()),  # median of the timings (null unless ok), as in datasets
    ("label", pa.string()),
    ("seed", pa.int64()),
    # the batch's wall time, split evenly over its trials (sums over a run are the run's totals)
    ("model_s", pa.float64()),  # cost model predict + update
    ("search_s", pa.float64()),  # MetaSchedule's search, everything else in the tuning loop
    ("build_s", pa.float64()),
    ("measure_s", pa.float64()),
    ("log_s", pa.float64()),  # writing these rows (features for the records table)
    ("finished_at", pa.timestamp("us", tz="UTC")),
])
RUN_FILE = "run.json"
CONFIG_FILE = "run-config.json"


class RunMismatchError(ValueError):
    """Resuming a run folder with another model, search, machine or protocol (one line)."""


@dataclass(frozen=True)
class RunKey:
    """One run: a task (or a network's tasks), a contender, a seed."""

    group: str  # "<task>-<id8>" or "network-<name>"
    label: str
    seed: int

    def folder(self, out_dir: str) -> str:
        return os.path.join(out_dir, _safe(self.group), _safe(self.label), f"seed-{self.seed}")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)


class RunLog:
    """The folder of one run, open for writing (its store holds the folder's lock)."""

    def __init__(self, folder: str, provenance: dict):
        os.makedirs(folder, exist_ok=True)
        self.folder = folder
        self.store = DatasetStore(folder, provenance)
        self._known = self.store.known_keys("records")
        self._workloads = self.store.known_keys("workloads")

    def close(self) -> None:
        self.store.close()

    def trials(self) -> pa.Table:
        return read_trials(self.folder)

    def add_workloads(self, rows: list[dict]) -> None:
        new = [r for r in rows if r["workload_id"] not in self._workloads]
        if new:
            self.store.write("workloads", new)
            self._workloads.update(r["workload_id"] for r in new)

    def write_config(self, config: dict) -> None:
        """What the run is (contender, search, hardware, protocol, tasks), written at its first start."""
        path = os.path.join(self.folder, CONFIG_FILE)
        if os.path.exists(path):
            return
        with open(path + ".partial", "w") as handle:
            json.dump(config, handle, indent=1, sort_keys=True)
        os.replace(path + ".partial", path)

    def append_records(self, records: list[dict]) -> None:
        """A measured batch's records not already in the run (atomic)."""
        fresh = [r for r in records if (r["record_id"], r["hw_id"]) not in self._known]
        self.store.write("records", fresh)
        self._known.update((r["record_id"], r["hw_id"]) for r in fresh)

    def append_trials(self, trials: list[dict]) -> None:
        """A measured batch's trials (atomic), after its records: a trial always names a stored record."""
        if not trials:
            return
        os.makedirs(os.path.join(self.folder, "trials"), exist_ok=True)
        final = os.path.join(self.folder, "trials", f"part-{time.time_ns():020d}-{os.getpid()}.parquet")
        pq.write_table(pa.Table.from_pylist(trials, schema=TRIALS), final + ".partial")
        os.replace(final + ".partial", final)
        self.store.record_table("trials")

    def finish(self, summary: dict) -> None:
        path = os.path.join(self.folder, RUN_FILE)
        with open(path + ".partial", "w") as handle:
            json.dump(summary, handle, indent=1, sort_keys=True)
        os.replace(path + ".partial", path)


def check_config(folder: str, config: dict) -> None:
    """A resume must be the same run as the folder's first start: RunMismatchError (one line) otherwise."""
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.exists(path):
        return
    with open(path) as handle:
        saved = json.load(handle)
    changed = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
    if changed:
        raise RunMismatchError(f"{folder} holds a run with another {', '.join(changed)}; resume it as it was "
                               "started, or tune into another --out")


def read_trials(folder: str) -> pa.Table:
    """A run's trials in trial order (empty when none were written); half-written shards are ignored."""
    shard_dir = os.path.join(folder, "trials")
    files = sorted(f for f in os.listdir(shard_dir) if f.endswith(".parquet")) if os.path.isdir(shard_dir) else []
    if not files:
        return TRIALS.empty_table()
    table = pa.concat_tables([pq.read_table(os.path.join(shard_dir, f), schema=TRIALS) for f in files])
    return table.sort_by("trial")


def read_run(folder: str) -> dict | None:
    """The run's `run.json` (None while the run has not finished)."""
    path = os.path.join(folder, RUN_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def run_folders(out_dir: str) -> list[str]:
    """Every run folder under a tuning output folder (those with a trials table or a run.json)."""
    found = []
    for root, dirs, files in os.walk(out_dir):
        if RUN_FILE in files or "trials" in dirs:
            found.append(root)
            dirs[:] = []
    return sorted(found)


__all__ = ["TRIALS", "RunKey", "RunLog", "read_run", "read_trials", "run_folders"]
