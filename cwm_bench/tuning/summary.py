"""`cwm-bench tune-report`: what tuning runs achieved, against a reference contender (`ansor`).

All figures come from the runs' logs (`trials` tables and `run.json`): a task's best latency after
t trials is the minimum over its first t ok trials (medians of timings, as in datasets).

- speedup of a model over the reference on one (task, seed) = reference best / model best at the
  same budget (> 1: the model found a faster kernel); the table's figure is the geometric mean over
  all (task, seed) pairs, with a 95% bootstrap interval (tasks resampled, then seeds within each);
- wins: the share of (task, seed) pairs where the model's best is faster than the reference's;
- trials to match: the fewest trials after which the model's best is within `tolerance` (geomean
  over tasks, median over seeds) of the reference's best at the largest budget it ran;
- the time split (model / search / build / measure / log) per trial, and the model's time per
  trial as a share of the measurement time (the tuner's overhead).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from cwm_bench.tuning.run_log import read_run, read_trials, run_folders


class TuneReportError(ValueError):
    """Nothing to report, or a reference that did not run (one line)."""


@dataclass
class Run:
    folder: str
    label: str
    seed: int
    group: str
    budget: int
    summary: dict | None  # run.json (None: unfinished)
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # workload_id -> best latency after t+1 trials
    task_names: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    trials: int = 0


def load_runs(dirs: list[str]) -> list[Run]:
    """Every run under the given tuning folders (unfinished runs included, flagged by summary None)."""
    runs = []
    for folder in sorted({f for d in dirs for f in run_folders(d)}):
        trials = read_trials(folder)
        summary = read_run(folder)
        if not trials.num_rows:
            continue
        rows = trials.to_pylist()
        by_task: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            by_task[r["workload_id"]].append(r["latency_s"] if r["status"] == "ok" else math.inf)
        curves = {w: np.minimum.accumulate(np.asarray(v, dtype=np.float64)) for w, v in by_task.items()}
        names = {t["workload_id"]: t["task_name"] for t in (summary or {}).get("tasks", [])}
        seconds = {k: float(sum(r[k] or 0.0 for r in rows)) for k in ("model_s", "search_s", "build_s", "measure_s",
                                                                       "log_s")}
        group = (summary or {}).get("group") or folder.rstrip("/").split("/")[-3]
        budget = (summary or {}).get("budget_per_task") or max(len(v) for v in curves.values())
        if summary and len(summary.get("tasks", [])) == 1:  # a finished search that ran out of new programs
            curves = {w: np.pad(c, (0, max(0, budget - len(c))), mode="edge") for w, c in curves.items()}
        runs.append(Run(folder, rows[0]["label"], int(rows[0]["seed"]), group, int(budget), summary, curves, names,
                        seconds, len(rows)))
    if not runs:
        raise TuneReportError(f"no tuning runs under {', '.join(dirs)}")
    return runs


def best_at(run: Run, workload_id: str, trials: int) -> float:
    curve = run.curves.get(workload_id)
    if curve is None or len(curve) < trials:
        return math.nan  # the run did not reach this budget
    return float(curve[trials - 1])


def _pairs(runs: list[Run], label: str, reference: str, budget: int) -> dict[str, dict[int, float]]:
    """task -> seed -> log(reference best / model best) at `budget`, where both reached it; -inf where
    only the reference found a valid program, +inf where only the model did."""
    # the run of the smallest budget that reaches `budget` (a longer run's prefix serves otherwise)
    ordered = sorted((r for r in runs if r.budget >= budget), key=lambda r: -r.budget)
    index = {(r.label, r.seed, w): r for r in ordered for w in r.curves}
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for (lab, seed, w), run in index.items():
        if lab != label or (reference, seed, w) not in index:
            continue
        mine, theirs = best_at(run, w, budget), best_at(index[(reference, seed, w)], w, budget)
        if math.isnan(mine) or math.isnan(theirs) or (math.isinf(mine) and math.isinf(theirs)):
            continue  # a run that stopped early, or nobody found a valid program
        out[w][seed] = -math.inf if math.isinf(mine) else math.inf if math.isinf(theirs) else math.log(theirs / mine)
    return out


def bootstrap_geomean(pairs: dict[str, dict[int, float]], samples: int = 2000,
                      seed: int = 0) -> tuple[float, float, float]:
    """Geometric-mean speedup and its 95% interval: tasks resampled, then seeds within each task.
    Pairs where one side found no valid program (±inf) count in wins, not here."""
    tasks = [np.asarray([x for x in v.values() if math.isfinite(x)]) for v in pairs.values()]
    tasks = [t for t in tasks if len(t)]
    if not tasks:
        return math.nan, math.nan, math.nan
    point = float(np.exp(np.mean(np.concatenate(tasks))))
    rng = np.random.default_rng(seed)
    stats = np.empty(samples)
    for i in range(samples):
        chosen = rng.integers(0, len(tasks), len(tasks))
        stats[i] = np.mean(np.concatenate([tasks[t][rng.integers(0, len(tasks[t]), len(tasks[t]))] for t in chosen]))
    low, high = np.exp(np.percentile(stats, [2.5, 97.5]))
    return point, float(low), float(high)


def trials_to_match(runs: list[Run], label: str, reference_best: dict[str, float], tolerance: float) -> int | None:
    """Fewest trials t with geomean over tasks of (model best after t / reference best) <= 1 + tolerance,
    per seed, then the median over seeds; None when some seed never gets there."""
    by_seed: dict[int, list[Run]] = defaultdict(list)
    for r in runs:
        if r.label == label:
            by_seed[r.seed].append(r)
    needed = []
    for seed_runs in by_seed.values():
        # the longest curve of each task (a seed can have a short and a long run)
        curves = {w: r.curves[w] for r in sorted(seed_runs, key=lambda r: r.budget)
                  for w in r.curves if w in reference_best}
        if set(curves) != set(reference_best):
            continue
        length = min(len(c) for c in curves.values())
        ratio = np.exp(np.mean([np.log(curves[w][:length] / reference_best[w]) for w in curves], axis=0))
        hit = np.nonzero(ratio <= 1 + tolerance)[0]
        needed.append(int(hit[0]) + 1 if len(hit) else None)
    if not needed or any(n is None for n in needed):
        return None
    return int(math.ceil(np.median(needed)))


@dataclass
class Row:
    label: str
    runs: int
    seeds: int
    tasks: int
    geomean: float
    low: float
    high: float
    wins: float
    pairs: int
    invalid: int  # pairs where the model found no valid program and the reference did (losses)
    seconds_per_trial: dict[str, float]
    model_share_of_measure: float
    trials_to_match: int | None
    hardware: str
    trained_on: str
    zero_shot: bool | None
    other_cpu: bool  # trained on another CPU (arch) than the one it tunes on


def summarize_runs(runs: list[Run], reference: str = "ansor", budget: int = 64, tolerance: float = 0.02,
                   samples: int = 2000) -> tuple[list[Row], dict]:
    """One row per contender at `budget` trials per task, and facts about the comparison."""
    labels = sorted({r.label for r in runs}, key=lambda lab: (lab != reference, lab))
    if reference not in labels:
        raise TuneReportError(f"the reference {reference!r} did not run; contenders here: {', '.join(labels)}")
    long_ref = [r for r in runs if r.label == reference and r.budget > budget]
    long_budget = max((r.budget for r in long_ref), default=None)
    reference_best: dict[str, float] = {}
    if long_budget:  # the reference's best at its largest budget: median over its seeds
        per_task: dict[str, list[float]] = defaultdict(list)
        for r in long_ref:
            if r.budget == long_budget:
                for w in r.curves:
                    per_task[w].append(best_at(r, w, long_budget))
        reference_best = {w: float(np.median(v)) for w, v in per_task.items() if all(math.isfinite(x) for x in v)}
    rows = []
    for label in labels:
        mine = [r for r in runs if r.label == label]
        pairs = _pairs(runs, label, reference, budget)
        point, low, high = bootstrap_geomean(pairs, samples)
        logs = [v for task in pairs.values() for v in task.values()]
        trials = sum(r.trials for r in mine) or 1
        measure = sum(r.seconds.get("measure_s", 0.0) for r in mine)
        per_trial = {k: sum(r.seconds.get(k, 0.0) for r in mine) / trials
                     for k in ("model_s", "search_s", "build_s", "measure_s", "log_s")}
        described = [r.summary for r in mine if r.summary]
        hardware = sorted({f"{s['tuned_on']['hw_name']} ({s['tuned_on']['hw_arch']})" for s in described})
        trained = sorted({f"{h.get('hw_name')} ({h.get('hw_arch')})" for s in described
                          for h in s["contender"].get("trained_on") or []})
        trained_arch = {h.get("hw_arch") for s in described for h in s["contender"].get("trained_on") or []}
        tuned_arch = {s["tuned_on"]["hw_arch"] for s in described}
        seen = [t["seen_in_training"] for s in described for t in s["tasks"]]
        kind = described[0]["contender"]["kind"] if described else ""
        rows.append(Row(label, len(mine), len({r.seed for r in mine}), len({w for r in mine for w in r.curves}),
                        point, low, high, float(np.mean([v > 0 for v in logs])) if logs else math.nan, len(logs),
                        sum(v == -math.inf for v in logs),
                        per_trial, sum(r.seconds.get("model_s", 0.0) for r in mine) / measure if measure else math.nan,
                        trials_to_match(runs, label, reference_best, tolerance) if reference_best else None,
                        ", ".join(hardware), ", ".join(trained) or ("none (learns online)" if kind in (
                            "tvm-xgb", "registered") else "none" if kind == "tvm-random" else "unknown"),
                        None if not seen or kind not in ("checkpoint", "factory") else not any(seen),
                        bool(trained_arch) and trained_arch != tuned_arch))
    facts = {"reference": reference, "budget": budget, "tolerance": tolerance, "long_budget": long_budget,
             "long_budget_tasks": len(reference_best), "unfinished": [r.folder for r in runs if r.summary is None]}
    return rows, facts


def per_task_table(runs: list[Run], budget: int) -> tuple[list[str], list[str], dict]:
    """(task names, labels, {(task, label): median best latency over seeds at `budget`}); a task is
    named with its id's first 8 digits, as names repeat across networks."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    names: dict[str, str] = {}
    for r in runs:
        for w in r.curves:
            names[w] = f"{r.task_names.get(w, 'task')} ({w[:8]})"
            value = best_at(r, w, budget)
            if math.isfinite(value):
                cells[(w, r.label)].append(value)
    labels = sorted({r.label for r in runs})
    return [names[w] for w in sorted(names, key=names.get)], labels, {
        (names[w], lab): float(np.median(v)) for (w, lab), v in cells.items()}
