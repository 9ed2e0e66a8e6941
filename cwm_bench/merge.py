"""Merge several collection folders (collectors on different machines, one target kind) into one.

A record is a program of a workload on a hardware: (record_id, hw_id). The same key in two folders
is a duplicate: dropped when both rows say the same thing, a *conflict* when they disagree (status
or timings: two collectors with the same seed measured the same program). Conflicts keep the
earlier measurement and are reported, never silently resolved. Only `workloads` and `records` are
merged: a `noise` table belongs to one folder's measurements (measure noise on the merged folder).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field

import pyarrow as pa

from cwm_bench.rows.store import DatasetStore


class MergeError(ValueError):
    pass


@dataclass
class Conflict:
    record_id: str
    hw_id: str
    kept: str  # "<folder>: <status> <latency>"
    dropped: str


@dataclass
class MergeReport:
    sources: list[str]
    workloads: int = 0
    records: int = 0
    duplicates: int = 0  # identical rows dropped
    conflicts: list[Conflict] = field(default_factory=list)
    per_source: dict[str, int] = field(default_factory=dict)  # records each source contributed

    def __str__(self) -> str:
        lines = [f"{src}: {n} records kept" for src, n in self.per_source.items()]
        lines.append(f"merged: {self.workloads} workloads, {self.records} records; {self.duplicates} identical "
                     f"duplicate(s) dropped, {len(self.conflicts)} conflicting duplicate(s)")
        for c in self.conflicts[:10]:
            lines.append(f"  conflict {c.record_id} on {c.hw_id}: kept {c.kept}; dropped {c.dropped}")
        if len(self.conflicts) > 10:
            lines.append(f"  ... {len(self.conflicts) - 10} more (--conflicts FILE lists them all)")
        return "\n".join(lines)


def _target_kind(provenance: dict) -> str | None:
    try:
        return json.loads(provenance.get("target", "{}")).get("kind")
    except (TypeError, ValueError):
        return None


def _describe(source: str, row: dict) -> str:
    latency = f"{row['latency_s'] * 1e6:.1f}us" if row["latency_s"] is not None else "-"
    return f"{source}: {row['status']} {latency}"


def merge_datasets(sources: list[str], out_dir: str) -> MergeReport:
    """Write the union of `sources` into the new folder `out_dir` (built aside, renamed into place)."""
    if len(set(map(os.path.realpath, sources))) != len(sources):
        raise MergeError("a folder is listed twice")
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise MergeError(f"{out_dir} exists and is not empty; merge into a new folder")
    stores = []
    for src in sources:
        if not os.path.exists(os.path.join(src, "manifest.json")):
            raise MergeError(f"{src}: not a collection folder (no manifest.json); merge collections, then release")
        stores.append(DatasetStore(src, readonly=True))
    kinds = {src: _target_kind(s.provenance) for src, s in zip(sources, stores, strict=True)}
    if len(set(kinds.values())) > 1:
        raise MergeError(f"different target kinds cannot share a dataset: {kinds}")

    report = MergeReport(list(sources))
    workloads, records, tables, seen_workloads = [], [], [], {}
    seen: dict[tuple[str, str], tuple[str, dict]] = {}
    for store in stores:
        w = store.read("workloads")
        keep = []
        for i, (wid, mod_json) in enumerate(zip(w.column("workload_id").to_pylist(),
                                                w.column("mod_json").to_pylist(), strict=True)):
            if wid in seen_workloads:
                if seen_workloads[wid] != mod_json:
                    raise MergeError(f"workload {wid} differs between folders (same id, other program)")
                continue
            seen_workloads[wid] = mod_json
            keep.append(i)
        workloads.append(w.take(pa.array(keep, pa.int64())))

        tables.append(store.read("records"))

    # Earliest measurement first across all folders (folder order breaks ties), so that of two
    # conflicting rows the earlier one is kept wherever it came from.
    summaries = [t.select(["record_id", "hw_id", "status", "latency_s", "latencies_s", "measured_at"]).to_pylist()
                 for t in tables]
    order = sorted((row["measured_at"], s, i) for s, rows in enumerate(summaries) for i, row in enumerate(rows))
    kept: list[list[int]] = [[] for _ in sources]
    for _, s, i in order:
        row = summaries[s][i]
        key = (row["record_id"], row["hw_id"])
        if key not in seen:
            seen[key] = (sources[s], row)
            kept[s].append(i)
            continue
        first_src, first = seen[key]
        if (first["status"], first["latencies_s"]) == (row["status"], row["latencies_s"]):
            report.duplicates += 1
        else:
            report.conflicts.append(Conflict(key[0], key[1], _describe(first_src, first), _describe(sources[s], row)))
    for src, table, rows in zip(sources, tables, kept, strict=True):
        records.append(table.take(pa.array(sorted(rows), pa.int64())))
        report.per_source[src] = len(rows)

    provenance = dict(stores[0].provenance)
    provenance["merged_from"] = [{"folder": os.path.basename(os.path.normpath(s)), "provenance": st.provenance}
                                 for s, st in zip(sources, stores, strict=True)]
    building = out_dir.rstrip("/") + ".merging"
    shutil.rmtree(building, ignore_errors=True)
    out = DatasetStore(building, provenance)
    try:
        for data in workloads:
            out.write_arrow("workloads", data)
        for data in records:
            out.write_arrow("records", data)
        out.compact("workloads")
        out.compact("records")
    except BaseException:
        out.close()
        shutil.rmtree(building, ignore_errors=True)
        raise
    out.close()
    os.remove(os.path.join(building, ".lock"))
    if os.path.exists(out_dir):
        os.rmdir(out_dir)  # empty (checked above)
    os.replace(building, out_dir)
    report.workloads = sum(t.num_rows for t in workloads)
    report.records = sum(t.num_rows for t in records)
    return report
