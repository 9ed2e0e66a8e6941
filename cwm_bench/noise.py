"""Two measurements of the same programs: how often they agree, and what that says about noise.

A cost model is scored by how often it orders two programs of a task the way the measured latencies
do (pairwise ordering accuracy, OPA). Re-measuring the same programs (same machine, a fresh process,
later) and comparing the two runs gives two figures per task and overall:

- **Two-run agreement** (`pairwise_agreement`): the share of a task's program pairs that both runs
  order the same way (pairs tied in either run are skipped). It is *not* an upper bound on a model's
  OPA: a model that knew the true latencies would agree with one noisy run more often than two noisy
  runs agree with each other (each run errs on its own, and two errors rarely cancel). In the model
  below it is a lower bound on that oracle's OPA against either run, even if one run is noisier.
- **Estimated oracle OPA** (`oracle_opa_estimate`): the expected OPA, against ONE run (the released
  labels, the original run), of an oracle that knew the true latencies. A model can exceed it only
  through estimation error (or where the assumptions below fail).

The estimator is the correction for attenuation, done on Kendall's tau. Assumptions: within a task,
each run's log latency is the true log latency plus an error; the errors are independent of each
other and of the truth, equally large in both runs, and roughly Gaussian; the true log latencies
are spread smoothly (no clusters of near-identical programs spaced at the noise scale). Then, for a
task whose runs agree on a share A of pairs (Kendall tau_12 = 2A - 1):

    r_12 = sin(pi * tau_12 / 2)          # Greiner: Pearson r of the two runs (bivariate normal)
    r_1  = sqrt(r_12)                    # Spearman 1904: corr(truth, run) when both runs are equally noisy
    oracle OPA = 1/2 + arcsin(r_1) / pi  # Sheppard: P(truth and run order a pair alike)

Near A = 1 this is 1 - (1 - A) / sqrt(2): the oracle's error rate is the two runs' disagreement
rate / sqrt(2), which also holds for Gaussian errors whose size differs from program to program
and, when the noise is small against the spread of a task's latencies, for any smooth latency
distribution. It is applied per task; the task mean averages the tasks' estimates and the pooled
figure weights them by compared pairs (the inverse is not linear, so inverting the pooled agreement
of tasks with different noise would be biased). A <= 1/2 (only possible through sampling noise
under the model) gives 1/2; no compared pair gives None.

Measured bias (estimate minus the true oracle OPA, i.e. the agreement of the true latencies with
run 1) on synthetic tasks shaped like the releases (66 tasks x 12 programs, 38 x 32), with true log
latencies normal, bimodal, skewed or drawn from the released tasks, and errors Gaussian, Student-t(3)
or of a per-program size (means over 24 simulated releases per case;
benchmarks/oracle_estimator_bias.py prints these): with equal noise in both runs within +-0.002 up
to 10% noise (sd of log latency) and -0.006 to +0.007 at 30% (the largest for bimodal latencies).
`tests/test_noise.py` checks three noise levels. Directions to keep in mind:

- unequal noise: the estimate is for a run of the two runs' combined (geometric-mean) reliability,
  so it is too HIGH when the labels (the original run) are the noisier run and too LOW when they
  are the quieter one (other run at half / double the labels' noise, labels at 1-30%: +0.0005 to
  +0.028 / -0.001 to -0.053). `median_cv_original` vs `median_cv_remeasured` hints at which;
- clusters of near-identical programs spaced at the noise scale: too high (+0.007 to +0.021 with
  three tight clusters per task at 10-30% noise, under +0.003 at 1-3%);
- heavy-tailed errors independent between the runs: slightly too low (Student-t(3) errors: 0 to
  -0.006 with normal latencies, -0.006 to +0.001 over all four spreads).

The obvious alternative, inverting the per-pair relation agreement = p^2 + (1 - p)^2 within quantile
bins of the gap of the mean of both runs' log latencies, was measured the same way and rejected:
conditioning on that gap couples the two runs' errors, and with 8 bins per task it stayed biased
upward (0 to +0.003 at 1-3% noise, up to +0.017 at 30%). The timings each row carries
(`latencies_s`) are not used: the halves of one run share that run's session, and on the released
CPU data the two runs' medians differ (median relative change 17.5%, as `cwm-bench noise` prints)
several times more than a median of 15 timings varies by their own spread (median CV 11.0%, so
about 1.25 * 11.0% / sqrt(15) = 3.6%), so split timings would understate the noise.

`run_agreement` computes both figures per task and overall, with the spread of repeats within a
run (coefficient of variation) and the change of the summary latency between runs;
`dataset_noise_reference` does so for a dataset folder against its own `noise` table; `noise_table`
is the per-record table a release stores as `noise`.
"""

from __future__ import annotations

import math
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


def oracle_opa_estimate(agreement: float | None) -> float | None:
    """Estimated OPA, against one run, of an oracle that knew the true latencies, from the two-run
    agreement A of a task (the module docstring has the model and its biases): 1/2 + arcsin(sqrt(
    sin(pi (A - 1/2)))) / pi. 1 for A = 1, 1/2 for A <= 1/2, None for None (no compared pair)."""
    if agreement is None or not math.isfinite(agreement):
        return None
    r12 = math.sin(math.pi * (min(agreement, 1.0) - 0.5))  # Greiner: r = sin(pi tau / 2), tau = 2A - 1
    if r12 <= 0.0:
        return 0.5
    return 0.5 + math.asin(math.sqrt(r12)) / math.pi


def _mean(values: list[float | None], weights: list[float] | None = None) -> float | None:
    """(Weighted) mean of the defined values; None if there is none (or no weight)."""
    weights = [1.0] * len(values) if weights is None else weights
    kept = [(v, w) for v, w in zip(values, weights, strict=True) if v is not None]
    total = sum(w for _, w in kept)
    return float(sum(v * w for v, w in kept) / total) if total > 0 else None


def run_agreement(original: pa.Table, remeasured: pa.Table) -> dict:
    """Two-run agreement, estimated oracle OPA and spread between two measurements of the same records
    (both must be `ok`).

    Overall: `agreement` pools the compared pairs of all tasks, `agreement_task_mean` averages the
    per-task agreements; `oracle_opa_task_mean` averages the per-task oracle estimates and
    `oracle_opa_pooled` weights them by compared pairs (`oracle_opa_estimate`: the OPA against
    ORIGINAL of a model that knew the true latencies). `per_task`, keyed by workload_id, has
    `agreement` and `oracle_opa` per task. Undefined values are None. Raises ValueError if a table
    holds the same record ok on two hardware ids.
    """
    pairs = _join(original, remeasured)
    by_task: dict[str, list[tuple[dict, dict]]] = {}
    for o, r in pairs:
        by_task.setdefault(o["workload_id"], []).append((o, r))
    per_task = {}
    for wid, task_pairs in by_task.items():
        agree, compared = pairwise_agreement([o["latency_s"] for o, _ in task_pairs],
                                             [r["latency_s"] for _, r in task_pairs])
        agreement = agree / compared if compared else None
        per_task[wid] = {**_spread(task_pairs), "pairs": compared, "agreeing_pairs": agree,
                         "agreement": agreement, "oracle_opa": oracle_opa_estimate(agreement)}
    # Only programs of one task are ever compared: the pooled counts are sums over tasks.
    compared = sum(t["pairs"] for t in per_task.values())
    agree = sum(t["agreeing_pairs"] for t in per_task.values())
    tasks = list(per_task.values())
    return {
        **_spread(pairs),
        "tasks": len(per_task),
        "pairs": compared,
        "agreeing_pairs": agree,
        "agreement": agree / compared if compared else None,
        "agreement_task_mean": _mean([t["agreement"] for t in tasks]),
        "oracle_opa_pooled": _mean([t["oracle_opa"] for t in tasks], [t["pairs"] for t in tasks]),
        "oracle_opa_task_mean": _mean([t["oracle_opa"] for t in tasks]),
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
    if os.path.exists(os.path.join(root, "manifest.json")):  # a collection: list it, as every table is
        from cwm_bench.rows.store import DatasetStore

        with DatasetStore(root) as store:
            store.record_table("noise")
    return path


def _dataset_run_agreement(root: str, workload_ids=None) -> dict | None:
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
    return run_agreement(records, noise)


_SPREAD_KEYS = ("programs", "median_cv_original", "median_cv_remeasured", "median_rel_change", "median_ratio")


def _reference(figures: dict) -> dict:
    return {"pairs": figures["pairs"], "agreeing_pairs": figures["agreeing_pairs"],
            "two_run_agreement": figures["agreement"], "oracle_opa": figures["oracle_opa"],
            **{k: figures[k] for k in _SPREAD_KEYS}}


def dataset_noise_reference(root: str, workload_ids=None) -> dict | None:
    """The noise reference of a dataset folder: its records (the labels) against its own `noise` table
    (None without one), optionally restricted to some tasks (e.g. the ones being evaluated).

    `two_run_agreement` and `oracle_opa` (the estimated OPA against the labels of a model that knew
    the true latencies, `oracle_opa_estimate`) are means over tasks; `two_run_agreement_pooled`
    pools the compared pairs of all tasks and `oracle_opa_pooled` weights the tasks' estimates by
    them. Also `tasks`, `pairs`, `agreeing_pairs`, `programs`, the spread figures of
    `run_agreement`, the hardware ids and `per_task` (the same names, per workload_id).
    """
    figures = _dataset_run_agreement(root, workload_ids)
    if figures is None:
        return None
    return {
        "two_run_agreement": figures["agreement_task_mean"],
        "two_run_agreement_pooled": figures["agreement"],
        "oracle_opa": figures["oracle_opa_task_mean"],
        "oracle_opa_pooled": figures["oracle_opa_pooled"],
        "tasks": figures["tasks"],
        "pairs": figures["pairs"],
        "agreeing_pairs": figures["agreeing_pairs"],
        **{k: figures[k] for k in _SPREAD_KEYS},
        "hw_ids_original": figures["hw_ids_original"],
        "hw_ids_remeasured": figures["hw_ids_remeasured"],
        "per_task": {wid: _reference(t) for wid, t in figures["per_task"].items()},
    }
