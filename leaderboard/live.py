"""The live score: a submission as the cost model of MetaSchedule's search on held-out tasks, against
`ansor` (TVM's XGBModel from scratch) with the same seeds, search and measurement path.

The harness builds and measures (a submission cannot fake a latency); the sandboxed model only
scores candidates. The `ansor` reference runs are shared by all submissions in one output folder
(a finished run is reused, an unfinished one resumed), so each new submission costs only its own runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cwm_bench.leaderboard.sandbox import Limits, SandboxedModel
from cwm_bench.leaderboard.submission import Submission

LIVE_DATASET = "datasets/cwm-bench-cpu-v0"
REFERENCE = "ansor"


@dataclass(frozen=True)
class LivePlan:
    budget: int = 64
    tasks: int = 2  # the by_network test tasks with the fewest FLOPs (cheapest to measure)
    seeds: int = 1
    out_dir: str = "results/leaderboard-live"
    dataset: str = LIVE_DATASET


def live_tasks(plan: LivePlan) -> list:
    from cwm_bench.tuning.tasks import resolve_workloads

    tasks = sorted(resolve_workloads([f"{plan.dataset}:by_network"]), key=lambda w: (w.flops, w.workload_id))
    return tasks[:plan.tasks]


def live_score(submission: Submission, limits: Limits, plan: LivePlan, progress: bool = True) -> dict:
    """Tune `plan.tasks` held-out tasks × `plan.seeds` seeds with the submission and with `ansor`;
    the geomean speedup of the best latency over ansor's with its bootstrap CI, and the wins."""
    from cwm_bench.tuning.contenders import Contender, parse_contender
    from cwm_bench.tuning.summary import load_runs, summarize_runs
    from cwm_bench.tuning.tune import TuneConfig, TuneGroup, tune_all

    code = submission.code
    if code is None:
        raise ValueError("live tuning needs a code submission (a predictions file cannot score new candidates)")
    digest = submission.digest()
    # the files' digest in the label: a changed submission (--force) never reuses the old one's runs
    label = f"{submission.meta.name}@{submission.meta.version}+{digest[:8]}"
    opened: list[SandboxedModel] = []

    def factory() -> SandboxedModel:
        for previous in opened:  # runs are sequential: the last run's sandbox is done
            previous.close()
        model = SandboxedModel(submission.folder, code.include, code.checkpoint, code.module, limits,
                               label=submission.meta.name)
        opened.append(model)
        return model

    from cwm_bench.model.training_record import read_training
    from cwm_bench.tuning.contenders import training_hardware

    training = read_training(submission.path(code.checkpoint)) or {}
    contender = Contender(label, "factory", f"sha256:{digest}", trained_on=training_hardware(training),
                          trained_workloads=frozenset(training.get("workload_ids") or ()), factory=factory)
    groups = [TuneGroup.task(w) for w in live_tasks(plan)]
    config = TuneConfig(budget=plan.budget)
    try:
        tune_all(groups, [parse_contender(REFERENCE), contender], list(range(plan.seeds)), config, plan.out_dir,
                 progress=progress)
    finally:
        for model in opened:
            model.close()
    names = {g.name for g in groups}
    runs = [r for r in load_runs([plan.out_dir]) if r.label in (label, REFERENCE) and r.group in names
            and r.budget == plan.budget and r.seed < plan.seeds]
    rows, _ = summarize_runs(runs, reference=REFERENCE, budget=plan.budget)
    row = next((r for r in rows if r.label == label), None)
    if row is None:
        raise ValueError(f"no finished live run of {label} under {plan.out_dir}")
    return {"label": label, "reference": REFERENCE, "budget": plan.budget,
            "tasks": [g.workloads[0].workload_id for g in groups],
            "seeds": list(range(plan.seeds)), "speedup_geomean": row.geomean, "ci_low": row.low, "ci_high": row.high,
            "wins": row.wins, "pairs": row.pairs, "tuned_on": row.hardware, "trained_on": row.trained_on,
            "zero_shot": row.zero_shot, "other_cpu": row.other_cpu,
            "model_seconds_per_trial": row.seconds_per_trial.get("model_s"),
            "dataset": os.path.basename(os.path.normpath(plan.dataset))}
