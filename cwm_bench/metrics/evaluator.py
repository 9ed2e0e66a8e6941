"""OGB-style evaluator: one input format, every metric per task, aggregated with confidence intervals."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from cwm_bench.metrics.ranking import TASK_METRICS


class EvaluatorInputError(ValueError):
    pass


class Evaluator:
    """`Evaluator().eval({"task_id": ..., "y_true_latency": ..., "y_score": ...})` -> metrics.

    Each metric is computed per task (tasks with fewer than 2 programs are skipped), then reported as
    the plain mean over tasks, the task-weighted mean, and a bootstrap 95% interval over tasks.
    With `reference={"opa": 0.94, ...}` (per metric, the estimated value an oracle that knew the true
    latencies would reach against these labels; for OPA, `cwm_bench.noise.dataset_noise_reference`'s
    `oracle_opa`), each such metric also gets `fraction_of_oracle` = mean / reference. The reference
    is an estimate, so the fraction can exceed 1, but only through estimation error (its assumptions
    and biases are in `cwm_bench/noise.py`).
    """

    expected_input_format = (
        "dict with equal-length 1-D arrays:\n"
        "  task_id        : str, the workload id of each program\n"
        "  y_true_latency : float > 0, measured latency in seconds\n"
        "  y_score        : float, finite; higher = predicted faster (only compared within a task)\n"
        "  task_weight    : optional float >= 0, the task's weight (constant within a task; e.g. how\n"
        "                   often it occurs in its networks); default 1 per task")
    expected_output_format = (
        "dict: {metric: {'mean', 'weighted_mean', 'ci_low', 'ci_high', ['fraction_of_oracle']}} plus "
        "'num_tasks', 'num_programs' and 'per_task' ({task_id: {metric: value}}); fraction_of_oracle "
        "(only for metrics given a reference) = mean / the estimated oracle value, which can exceed 1 only "
        "through estimation error")

    def __init__(self, metrics: Sequence[str] | None = None, reference: dict[str, float] | None = None,
                 n_bootstrap: int = 1000, seed: int = 0):
        unknown = [m for m in metrics or () if m not in TASK_METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; valid: {', '.join(TASK_METRICS)}")
        self.metrics = list(metrics or TASK_METRICS)
        unknown = [m for m in reference or () if m not in TASK_METRICS]
        if unknown:
            raise ValueError(f"reference for unknown metric(s) {unknown}; valid: {', '.join(TASK_METRICS)}")
        self.reference = {m: v for m, v in (reference or {}).items() if v}
        self.n_bootstrap = n_bootstrap
        self.seed = seed

    def _parse(self, input_dict: dict):
        if not isinstance(input_dict, dict):
            raise EvaluatorInputError(f"expected a dict; format:\n{self.expected_input_format}")
        missing = [k for k in ("task_id", "y_true_latency", "y_score") if k not in input_dict]
        if missing:
            raise EvaluatorInputError(f"missing key(s) {missing}; format:\n{self.expected_input_format}")
        task = np.asarray(input_dict["task_id"]).astype(str)
        latency = np.asarray(input_dict["y_true_latency"], dtype=np.float64)
        score = np.asarray(input_dict["y_score"], dtype=np.float64)
        weight = np.asarray(input_dict.get("task_weight", np.ones(len(task))), dtype=np.float64)
        lengths = {len(task), len(latency), len(score), len(weight)}
        if len(lengths) != 1 or task.ndim != 1 or latency.ndim != 1 or score.ndim != 1:
            raise EvaluatorInputError(f"arrays must be 1-D and of equal length, got lengths task_id={len(task)}, "
                                      f"y_true_latency={len(latency)}, y_score={len(score)}")
        if not np.isfinite(latency).all() or (latency <= 0).any():
            raise EvaluatorInputError("y_true_latency must be finite and > 0 (drop failed programs first)")
        if not np.isfinite(score).all():
            raise EvaluatorInputError(f"y_score has {int((~np.isfinite(score)).sum())} non-finite value(s)")
        if (weight < 0).any() or not np.isfinite(weight).all():
            raise EvaluatorInputError("task_weight must be finite and >= 0")
        return task, latency, score, weight

    def eval(self, input_dict: dict) -> dict:
        task, latency, score, weight = self._parse(input_dict)
        per_task: dict[str, dict[str, float]] = {}
        task_weight: dict[str, float] = {}
        for t in np.unique(task):
            rows = task == t
            if rows.sum() < 2:
                continue
            per_task[t] = {m: TASK_METRICS[m](latency[rows], score[rows]) for m in self.metrics}
            task_weight[t] = float(weight[rows][0])
        if not per_task:
            raise EvaluatorInputError("no task has 2 or more programs: nothing to rank")
        names = sorted(per_task)
        w = np.array([task_weight[t] for t in names])
        rng = np.random.default_rng(self.seed)
        boot = rng.integers(0, len(names), size=(self.n_bootstrap, len(names)))
        result: dict = {"num_tasks": len(names), "num_programs": int(sum(np.isin(task, names))),
                        "per_task": per_task}
        for m in self.metrics:
            values = np.array([per_task[t][m] for t in names])
            valid = np.isfinite(values)
            v, vw = values[valid], w[valid]
            with warnings.catch_warnings():  # a resample of only undefined values is NaN, by design
                warnings.simplefilter("ignore", RuntimeWarning)
                samples = np.nanmean(values[boot], axis=1)
            entry = {"mean": float(v.mean()) if v.size else float("nan"),
                     "weighted_mean": float((v * vw).sum() / vw.sum()) if vw.sum() > 0 else float("nan"),
                     "ci_low": float(np.nanpercentile(samples, 2.5)),
                     "ci_high": float(np.nanpercentile(samples, 97.5))}
            if m in self.reference:
                entry["fraction_of_oracle"] = entry["mean"] / self.reference[m]
            result[m] = entry
        return result
