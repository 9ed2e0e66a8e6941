"""Bias of the estimated oracle OPA (`cwm_bench.noise`) on synthetic tasks whose true latencies are known.

    .venv/bin/python benchmarks/oracle_estimator_bias.py [--seeds 24] [--bins 8]

`run_agreement(labels, other_run)` estimates, per task, the pairwise ordering accuracy (OPA) against
the labels (run 1) of an oracle that knew the true latencies, from the two runs' agreement
(`oracle_opa_estimate`), and averages the tasks (`oracle_opa_task_mean`). Here the truth is known, so
the true oracle OPA is computed too: per task, `pairwise_agreement(true latencies, run 1)`, averaged
over tasks. Each table row is one scenario; "bias" is estimate minus true oracle OPA, as the mean
over `--seeds` simulated releases, with its standard deviation over them after the +-.

Scenarios (each seed simulates a whole release of that shape):

- task shapes like the releases: 66 tasks x 12 programs (CPU) and 38 tasks x 32 programs (H200);
- true log latencies per task with a spread s = S * exp(N(0, 0.5)) (S = 0.9 for 66x12, 1.4 for 38x32):
  normal N(0, s); bimodal (N(0, 0.3 s) +- s); skewed s * (Exp(1) - 1); released: log latencies drawn
  without replacement from one released task each (`datasets/cwm-bench-cpu-v0` records for 66x12,
  `datasets/cwm-bench-h200-v0` for 38x32; the row is skipped if the dataset is absent);
- errors added to each run's log latency, of size sigma (the noise level, ~ the CV; 1%, 3%, 10%, 30%):
  Gaussian N(0, sigma); Student-t(3) scaled to sd sigma; per-program size (Gaussian, sd sigma * l with
  l = exp(N(-0.245, 0.7)) per program, mean 1, the same l in both runs);
- the other run's noise: equal to the labels', half of it (labels the noisier run) or double it; the
  three share the truth and run 1 of a seed;
- clusters: three tight clusters of near-identical programs per task (centres N(0, s), spread 0.05 s
  within a cluster), Gaussian errors, equal noise;
- the rejected alternative (column "binned"): per task, pairs put into `--bins` quantile bins of the
  gap between the mean of both runs' log latencies, the per-pair relation agreement = p^2 + (1 - p)^2
  inverted within each bin (p = (1 + sqrt(2 A - 1)) / 2), weighted by the bins' pairs; equal noise.

Tasks here all have the same number of programs, so the pair-weighted `oracle_opa_pooled` equals the
task mean up to ties (released latencies have some); the summary prints the largest difference. The
summary lines at the end are the ranges that `cwm_bench/noise.py`'s docstring quotes. One seed takes
~4 s on one core (the default run ~1.5 min); every scenario's random stream depends only on
(scenario, seed), so more seeds extend a run without changing the first ones.
"""

from __future__ import annotations

import argparse
import collections
import os
import time

import numpy as np
import pyarrow as pa

from cwm_bench.noise import pairwise_agreement, run_agreement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {"66x12": (66, 12, 0.9, "cwm-bench-cpu-v0"), "38x32": (38, 32, 1.4, "cwm-bench-h200-v0")}
SPREADS = ("normal", "bimodal", "skewed", "released")
ERRORS = ("gaussian", "t3", "per-program")
NOISE = (0.01, 0.03, 0.1, 0.3)
OTHER = {"equal": 1.0, "half": 0.5, "double": 2.0}  # the other run's noise / the labels' noise


def released_pools(dataset: str, programs: int) -> list[np.ndarray] | None:
    """Log latencies of the ok records of each released task with at least PROGRAMS of them."""
    from cwm_bench.rows.reader import read_table

    root = os.path.join(ROOT, "datasets", dataset)
    if not os.path.isdir(root):
        return None
    table = read_table(root, "records", columns=["workload_id", "status", "latency_s"])
    by_task: dict[str, list[float]] = collections.defaultdict(list)
    for wid, status, latency in zip(*(table[c].to_pylist() for c in ("workload_id", "status", "latency_s")),
                                    strict=True):
        if status == "ok" and latency is not None:
            by_task[wid].append(float(np.log(latency)))
    return [np.asarray(v) for _, v in sorted(by_task.items()) if len(v) >= programs]


def true_log_latencies(rng, spread: str, tasks: int, programs: int, scale: float, pool) -> np.ndarray:
    s = scale * np.exp(rng.normal(0.0, 0.5, (tasks, 1)))
    if spread == "normal":
        return rng.normal(0.0, 1.0, (tasks, programs)) * s
    if spread == "bimodal":
        return (rng.normal(0.0, 0.3, (tasks, programs)) + rng.choice([-1.0, 1.0], (tasks, programs))) * s
    if spread == "skewed":
        return (rng.exponential(1.0, (tasks, programs)) - 1.0) * s
    if spread == "clusters":
        centres = rng.normal(0.0, 1.0, (tasks, 3))
        pick = rng.integers(0, 3, (tasks, programs))
        return (np.take_along_axis(centres, pick, axis=1) + rng.normal(0.0, 0.05, (tasks, programs))) * s
    if spread == "released":
        return np.stack([rng.choice(pool[k % len(pool)], programs, replace=False) for k in range(tasks)])
    raise ValueError(spread)


def errors(rng, kind: str, sigma: float, level: np.ndarray) -> np.ndarray:
    if kind == "gaussian":
        return rng.normal(0.0, sigma, level.shape)
    if kind == "t3":
        return sigma * rng.standard_t(3, level.shape) / np.sqrt(3.0)  # Var t(3) = 3
    if kind == "per-program":
        return sigma * level * rng.normal(0.0, 1.0, level.shape)
    raise ValueError(kind)


class Tables:
    """Records-like tables (the columns `run_agreement` reads) for one task shape."""

    def __init__(self, tasks: int, programs: int):
        n = tasks * programs
        self.record_id = pa.array([f"w{k}-p{i}" for k in range(tasks) for i in range(programs)])
        self.workload_id = pa.array([f"w{k}" for k in range(tasks) for _ in range(programs)])
        self.hw_id = pa.array(["synthetic"] * n)
        self.status = pa.array(["ok"] * n)
        self.offsets = pa.array(np.arange(n + 1, dtype=np.int32))

    def __call__(self, log_latency: np.ndarray) -> pa.Table:
        latency = pa.array(np.exp(log_latency).ravel())
        return pa.table({"record_id": self.record_id, "workload_id": self.workload_id, "hw_id": self.hw_id,
                         "status": self.status, "latency_s": latency,
                         "latencies_s": pa.ListArray.from_arrays(self.offsets, latency)})


def true_oracle(truth: np.ndarray, run1: np.ndarray) -> tuple[float, float]:
    """(task mean, pooled) pairwise agreement of the true latencies with run 1: the true oracle OPA."""
    per_task, agree_total, pair_total = [], 0, 0
    for t, y in zip(truth, run1, strict=True):
        agree, pairs = pairwise_agreement(t, y)
        per_task.append(agree / pairs)
        agree_total, pair_total = agree_total + agree, pair_total + pairs
    return float(np.mean(per_task)), agree_total / pair_total


def binned_estimate(run1: np.ndarray, run2: np.ndarray, bins: int) -> float:
    """Task mean of the rejected alternative: inversion of agreement = p^2 + (1 - p)^2 per gap-quantile bin."""
    i, j = np.triu_indices(run1.shape[1], 1)
    per_task = []
    for y1, y2 in zip(run1, run2, strict=True):
        d1, d2 = np.sign(y1[i] - y1[j]), np.sign(y2[i] - y2[j])
        keep = (d1 != 0) & (d2 != 0)
        if not keep.any():
            continue
        mean = (y1 + y2) / 2
        gap, agree = np.abs(mean[i] - mean[j])[keep], (d1 == d2)[keep]
        k = min(bins, len(gap))
        b = np.argsort(np.argsort(gap, kind="stable"), kind="stable") * k // len(gap)
        a, n = np.bincount(b, agree, k), np.bincount(b, None, k)
        p = (1 + np.sqrt(np.maximum(0.0, 2 * a / n - 1))) / 2
        per_task.append(float((n * p).sum() / n.sum()))
    return float(np.mean(per_task))


def fmt(values: list[float]) -> str:
    return f"{np.mean(values):+.4f} ±{np.std(values):.4f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=24, help="simulated releases per scenario")
    parser.add_argument("--bins", type=int, default=8, help="gap-quantile bins per task of the binned alternative")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = []  # (shape, spread, error, sigma, {column: [bias per seed]})
    pooled_gap = 0.0
    for si, (shape, (tasks, programs, scale, dataset)) in enumerate(SHAPES.items()):
        tables = Tables(tasks, programs)
        pool = released_pools(dataset, programs)
        scenarios = [(s, e) for s in SPREADS for e in ERRORS] + [("clusters", "gaussian")]
        for spread, error in scenarios:
            if spread == "released" and not pool:
                continue
            for ni, sigma in enumerate(NOISE):
                biases: dict[str, list[float]] = collections.defaultdict(list)
                for seed in range(args.seeds):
                    key = (si, (SPREADS + ("clusters",)).index(spread), ERRORS.index(error), ni, seed)
                    rng = np.random.default_rng(key)
                    truth = true_log_latencies(rng, spread, tasks, programs, scale, pool)
                    level = np.exp(rng.normal(-0.245, 0.7, truth.shape))
                    run1 = truth + errors(rng, error, sigma, level)
                    true_mean, true_pooled = true_oracle(truth, run1)
                    labels = tables(run1)
                    for column, ratio in OTHER.items():
                        if spread == "clusters" and column != "equal":
                            continue
                        run2 = truth + errors(rng, error, sigma * ratio, level)
                        result = run_agreement(labels, tables(run2))
                        biases[column].append(result["oracle_opa_task_mean"] - true_mean)
                        pooled_gap = max(pooled_gap, abs((result["oracle_opa_pooled"] - true_pooled)
                                                         - (result["oracle_opa_task_mean"] - true_mean)))
                        if column == "equal":
                            biases["binned"].append(binned_estimate(run1, run2, args.bins) - true_mean)
                            biases["oracle"].append(true_mean)
                rows.append((shape, spread, error, sigma, biases))

    columns = ("equal", "half", "double", "binned")
    print(f"bias = estimated - true oracle OPA (task mean), mean ±sd over {args.seeds} seeds; "
          f"other run's noise equal / half / double the labels'; binned: {args.bins} bins, equal noise")
    print(f"{'shape':5} {'spread':8} {'error':11} {'noise':>5} {'oracle':>6}  "
          + "  ".join(f"{c:>15}" for c in columns))
    for shape, spread, error, sigma, b in rows:
        print(f"{shape:5} {spread:8} {error:11} {sigma:5.0%} {np.mean(b['oracle']):6.4f}  "
              + "  ".join(f"{fmt(b[c]):>15}" for c in columns))

    def span(column, keep) -> str:
        means = [(float(np.mean(b[column])), (shape, spread, error, sigma))
                 for shape, spread, error, sigma, b in rows if b[column] and keep(spread, error, sigma)]
        lo, hi = min(means), max(means)
        return (f"{lo[0]:+.4f} to {hi[0]:+.4f} over {len(means)} rows (max at {hi[1][0]} {hi[1][1]} {hi[1][2]} "
                f"{hi[1][3]:.0%}, min at {lo[1][0]} {lo[1][1]} {lo[1][2]} {lo[1][3]:.0%})")

    smooth = ("normal", "bimodal", "skewed", "released")
    print("\nsummary (ranges of the rows' mean bias):")
    print("  equal noise, noise <= 10%:           ", span("equal", lambda s, e, n: s in smooth and n <= 0.1))
    print("  equal noise, noise 30%:              ", span("equal", lambda s, e, n: s in smooth and n == 0.3))
    print("  other run at half (labels noisier):  ", span("half", lambda s, e, n: s in smooth))
    print("  other run at double (labels quieter):", span("double", lambda s, e, n: s in smooth))
    print("  clusters, noise 1-3%:                ", span("equal", lambda s, e, n: s == "clusters" and n <= 0.03))
    print("  clusters, noise 10-30%:              ", span("equal", lambda s, e, n: s == "clusters" and n >= 0.1))
    print("  Student-t(3), equal, normal spread:  ", span("equal", lambda s, e, n: s == "normal" and e == "t3"))
    print("  Student-t(3), equal, all spreads:    ", span("equal", lambda s, e, n: s in smooth and e == "t3"))
    print("  binned, noise 1-3%:                  ", span("binned", lambda s, e, n: s in smooth and n <= 0.03))
    print("  binned, noise 10%:                   ", span("binned", lambda s, e, n: s in smooth and n == 0.1))
    print("  binned, noise 30%:                   ", span("binned", lambda s, e, n: s in smooth and n == 0.3))
    print(f"  largest |pooled bias - task-mean bias| in any seed: {pooled_gap:.5f}")
    print(f"  {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
