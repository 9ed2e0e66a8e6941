"""Score a submission on one dataset side: its code in the sandbox, or its predictions file.

The harness reads the test side (sealed inputs for the model, labels kept here), hands the model
only what it declared, checks what comes back, flags contamination (its checkpoint's training.json
against the evaluated ids, and its metadata's own training_data), and computes every ranking metric
with the Evaluator. One `Evaluation` per (dataset, split).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cwm_bench.leaderboard.model_meta import declared_overlap
from cwm_bench.leaderboard.sandbox import Limits, SandboxedModel, SubmissionError, isolation_available
from cwm_bench.leaderboard.submission import Submission, read_predictions

BOOTSTRAP_SEED = 0


@dataclass
class Evaluation:
    dataset_id: str
    dataset_sha256: str
    visibility: str  # "public" | "private"
    split: str
    side: str
    num_tasks: int
    num_programs: int
    metrics: dict[str, dict[str, float | None]]
    contaminated: bool | None  # None: nothing says what the model trained on
    contamination: list[str] = field(default_factory=list)  # why (empty when clean)
    checked_by: str = "metadata"  # "metadata" (predictions) or "metadata + checkpoint ids"
    noise: dict[str, float | None] = field(default_factory=dict)  # two-run agreement, oracle estimate
    model: str = ""
    inputs: list[str] = field(default_factory=list)
    score_seconds: float = 0.0
    bootstrap_seed: int = BOOTSTRAP_SEED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def private_isolation_problem(private_dir: str) -> str | None:
    """Why the sandbox could read `private_dir` here (so scoring on it must be refused), or None."""
    from cwm_bench.leaderboard.sandbox import traversable_by_others
    from cwm_bench.leaderboard.sandbox_child import sandbox_read_folders

    real = os.path.realpath(private_dir)
    for folder in sandbox_read_folders():
        base = os.path.realpath(folder)
        if base != "/" and (real == base or real.startswith(base.rstrip("/") + "/")):
            return f"{private_dir} lies inside {folder}, which the sandbox must read; move it elsewhere"
    available = isolation_available()
    if available["landlock_abi"]:
        return None
    if available["user"] and not traversable_by_others(private_dir):
        return None  # the folder or one above it is closed to "others": nobody cannot reach a file inside
    return (f"this machine cannot keep submitted code from reading {private_dir} (no Landlock, and no switch to an "
            "unprivileged user that the folder's permissions exclude)")


def open_model(submission: Submission, limits: Limits) -> SandboxedModel:
    code = submission.code
    assert code is not None
    return SandboxedModel(submission.folder, code.include, code.checkpoint, code.module, limits,
                          label=submission.meta.name)


def evaluate(submission: Submission, data_dir: str, split: str, visibility: str,
             model: SandboxedModel | None = None) -> Evaluation:
    """One evaluation of a (code or predictions) submission on the test side of `split` ("all": every
    record of a collection folder). Raises SubmissionError / SubmissionFormatError / ValueError."""
    from cwm_bench.metrics import TASK_METRICS, Evaluator
    from cwm_bench.model import load_side
    from cwm_bench.model.contamination import overlap
    from cwm_bench.model.training_record import read_training
    from cwm_bench.noise import dataset_noise_reference
    from cwm_bench.results import dataset_digest, nan_to_none

    dataset_id = os.path.basename(os.path.normpath(os.path.abspath(data_dir)))
    side = "all" if split == "all" else "test"
    inputs = model.inputs if model is not None else frozenset({"record_id"})
    test = load_side(data_dir, split, side, inputs)
    if not len(test):
        raise ValueError(f"{data_dir}: no ok records on the {side} side of {split}")
    digest, _ = dataset_digest(data_dir)
    reasons: list[str] = []
    declared = declared_overlap(submission.meta, dataset_id, split)
    if declared:
        reasons.append(declared)
    contaminated: bool | None = bool(declared)
    started = time.perf_counter()
    if model is not None:
        model.quiet_errors = visibility == "private"
        training = read_training(submission.path(submission.code.checkpoint))
        shared = overlap(training, split, test.task_ids, test.record_ids, trained=True)
        if shared.contaminated:
            reasons.append(f"its checkpoint was {shared.describe()}")
            contaminated = True
        elif shared.contaminated is None and not declared:
            reasons.append(f"unchecked: {shared.describe()}")
            contaminated = None
        scores = model.score(test.records)
        name, used, checked_by = model.name, sorted(model.inputs), "metadata + checkpoint ids"
    else:
        scores = read_predictions(submission.path(submission.predictions.file), test.record_ids)
        name, used, checked_by = submission.meta.model, ["predictions file"], "metadata"
    seconds = time.perf_counter() - started
    noise = dataset_noise_reference(data_dir, test.task_ids)
    oracle = noise.get("oracle_opa") if noise else None
    metrics = Evaluator(reference={"opa": oracle} if oracle else None, seed=BOOTSTRAP_SEED).eval(
        {"task_id": test.task_ids, "y_true_latency": test.latency_s, "y_score": np.asarray(scores, np.float64),
         "task_weight": test.task_weights()})
    return Evaluation(dataset_id, digest, visibility, split, side, metrics["num_tasks"], metrics["num_programs"],
                      {m: nan_to_none(metrics[m]) for m in TASK_METRICS}, contaminated, reasons,
                      checked_by, {"two_run_agreement": noise.get("two_run_agreement") if noise else None,
                                   "oracle_opa": oracle}, name, used, round(seconds, 3))


__all__ = ["Evaluation", "Limits", "SubmissionError", "evaluate", "open_model", "private_isolation_problem"]
