"""The noise ceiling: how well two measurements of the same programs agree with each other.

A cost model is scored by how often it orders two programs of a task the way the measured latencies
do. If re-measuring the same programs (same machine, a fresh process, later) orders a pair differently,
no model can get that pair right for sure: the pairwise agreement between the two runs is the highest
pairwise accuracy any cost model can honestly reach on this hardware. `noise_ceiling` computes it per
task and overall, with the spread of repeats within a run (coefficient of variation) and the change of
the summary latency between runs; `noise_table` is the per-record table a release stores as `noise`.
"""

from __future__ import annotations

import statistics

import numpy as np
import pyarrow as pa

NOISE_SCHEMA = pa.schema([
    ("record_id", pa.string()),
    ("workload_id", pa.string()),
    ("hw_id", pa.string()),  # the hardware of the re-measurement
    ("original_latency_s", pa.float64()),
    ("latencies_s", pa.list_(pa.float64())),  # every timing of the re-measurement
    ("latency_s", pa.float64()),
    ("cv_original", pa.float64()),
    ("cv_remeasured", pa.float64()),
    ("measured_at", pa.timestamp("us", tz="UTC")),  # of the re-measurement
])


def cv(latencies_s: list[float] | None) -> float | None:
    """Coefficient of variation (sample std / mean) of one record's timings; None below 2 timings."""
    if not latencies_s or len(latencies_s) < 2:
        return None
    values = np.asarray(latencies_s, dtype=np.float64)
    return float(values.std(ddof=1) / values.mean())


def _ok_rows(table: pa.Table, name: str, columns: list[str]) -> dict[str, dict]:
    rows = {}
    for r in table.select(columns).to_pylist():
        if r["status"] != "ok" or r["latency_s"] is None:
            continue
        if r["record_id"] in rows:
            raise ValueError(f"{name}: record {r['record_id']} is ok on more than one hardware "
                             f"({rows[r['record_id']]['hw_id']}, {r['hw_id']}); keep one hw_id first")
        rows[r["record_id"]] = r
    return rows


def _join(original: pa.Table, remeasured: pa.Table, extra: tuple[str, ...] = ()) -> list[tuple[dict, dict]]:
    """(original row, remeasured row) for every record ok in both, sorted by (workload_id, record_id)."""
    columns = ["record_id", "workload_id", "hw_id", "status", "latency_s", "latencies_s", *extra]
    a = _ok_rows(original, "original", columns[:6])
    b = _ok_rows(remeasured, "remeasured", columns)
    pairs = [(a[rid], b[rid]) for rid in a.keys() & b.keys()]
    for o, r in pairs:
        if o["workload_id"] != r["workload_id"]:
            raise ValueError(f"record {o['record_id']} belongs to workload {o['workload_id']} in the original "
                             f"and to {r['workload_id']} in the re-measurement")
    return sorted(pairs, key=lambda p: (p[0]["workload_id"], p[0]["record_id"]))


def pairwise_agreement(a: list[float], b: list[float]) -> tuple[int, int]:
    """(agreeing pairs, compared pairs) over all pairs i < j; a pair tied in either run is skipped."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    agree = total = 0
    for i in range(len(x) - 1):  # one row of the pair matrix at a time: memory stays O(n)
        dx, dy = np.sign(x[i + 1:] - x[i]), np.sign(y[i + 1:] - y[i])
        compared = (dx != 0) & (dy != 0)
        total += int(compared.sum())
        agree += int((compared & (dx == dy)).sum())
    return agree, total


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def _spread(pairs: list[tuple[dict, dict]]) -> dict:
    orig = [o["latency_s"] for o, _ in pairs]
    new = [r["latency_s"] for _, r in pairs]
    return {
        "programs": len(pairs),
        "median_cv_original": _median([cv(o["latencies_s"]) for o, _ in pairs]),
        "median_cv_remeasured": _median([cv(r["latencies_s"]) for _, r in pairs]),
        "median_rel_change": _median([abs(n / o - 1.0) for o, n in zip(orig, new, strict=True)]),
        # Below 1: the re-measurement is faster overall (another machine, or a quieter spell).
        "median_ratio": _median([n / o for o, n in zip(orig, new, strict=True)]),
    }


def noise_ceiling(original: pa.Table, remeasured: pa.Table) -> dict:
    """Agreement and spread between two measurements of the same records (both must be `ok`).

    Returns the overall figures (`agreement` pools the pairs of all tasks; `agreement_task_mean`
    averages the per-task values) and `per_task`, keyed by workload_id. Undefined values are None.
    Raises ValueError if a table holds the same record ok on two hardware ids.
    """
    pairs = _join(original, remeasured)
    by_task: dict[str, list[tuple[dict, dict]]] = {}
    for o, r in pairs:
        by_task.setdefault(o["workload_id"], []).append((o, r))
    per_task = {}
    for wid, task_pairs in by_task.items():
        agree, compared = pairwise_agreement([o["latency_s"] for o, _ in task_pairs],
                                             [r["latency_s"] for _, r in task_pairs])
        per_task[wid] = {**_spread(task_pairs), "pairs": compared, "agreeing_pairs": agree,
                         "agreement": agree / compared if compared else None}
    # Only programs of one task are ever compared: the pooled counts are sums over tasks.
    compared = sum(t["pairs"] for t in per_task.values())
    agree = sum(t["agreeing_pairs"] for t in per_task.values())
    task_values = [t["agreement"] for t in per_task.values() if t["agreement"] is not None]
    return {
        **_spread(pairs),
        "tasks": len(per_task),
        "pairs": compared,
        "agreeing_pairs": agree,
        "agreement": agree / compared if compared else None,
        "agreement_task_mean": float(np.mean(task_values)) if task_values else None,
        "hw_ids_original": sorted({o["hw_id"] for o, _ in pairs}),
        "hw_ids_remeasured": sorted({r["hw_id"] for _, r in pairs}),
        "per_task": per_task,
    }


def noise_table(original: pa.Table, remeasured: pa.Table) -> pa.Table:
    """One row per record ok in both runs (schema `NOISE_SCHEMA`), sorted by workload and record."""
    rows = [{
        "record_id": r["record_id"],
        "workload_id": r["workload_id"],
        "hw_id": r["hw_id"],
        "original_latency_s": o["latency_s"],
        "latencies_s": r["latencies_s"],
        "latency_s": r["latency_s"],
        "cv_original": cv(o["latencies_s"]),
        "cv_remeasured": cv(r["latencies_s"]),
        "measured_at": r["measured_at"],
    } for o, r in _join(original, remeasured, extra=("measured_at",))]
    return pa.Table.from_pylist(rows, schema=NOISE_SCHEMA)


def write_noise_table(root: str, original: pa.Table, remeasured: pa.Table) -> str:
    """Store `noise_table(original, remeasured)` as ROOT/noise/noise.parquet (atomically, replacing any
    earlier one): the `noise` table that `cwm-bench release` ships."""
    import os

    import pyarrow.parquet as pq

    folder = os.path.join(root, "noise")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "noise.parquet")
    pq.write_table(noise_table(original, remeasured), path + ".partial", compression="zstd")
    os.replace(path + ".partial", path)
    return path


def dataset_noise_ceiling(root: str, workload_ids=None) -> dict | None:
    """`noise_ceiling` of a dataset folder's records against its own `noise` table (None without one),
    optionally restricted to some tasks (e.g. the ones being evaluated)."""
    import pyarrow.compute as pc

    from cwm_bench.rows.reader import NotADatasetError, read_table

    try:
        noise = read_table(root, "noise")
    except NotADatasetError:
        return None
    if "status" not in noise.column_names:  # `noise_table` keeps only programs ok in both runs
        noise = noise.append_column("status", pa.array(["ok"] * noise.num_rows, pa.string()))
    records = read_table(root, "records", columns=["record_id", "workload_id", "hw_id", "status", "latency_s",
                                                   "latencies_s"])
    if workload_ids is not None:
        keep = pa.array(sorted(set(workload_ids)), pa.string())
        records = records.filter(pc.is_in(records["workload_id"], value_set=keep))
        noise = noise.filter(pc.is_in(noise["workload_id"], value_set=keep))
    return noise_ceiling(records, noise)
