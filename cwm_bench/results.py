"""The result file of `cwm-bench evaluate`: one JSON object per (model, dataset, split), with everything
needed to compare it later (metrics with intervals, model config, dataset checksums, versions).

Metric values that are undefined (NaN, e.g. Kendall's tau of a constant score) are written as null.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib.metadata
import json
import math
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from cwm_bench.metrics.ranking import TASK_METRICS

RESULT_SCHEMA_VERSION = "1"
METRIC_FIELDS = ("mean", "weighted_mean", "ci_low", "ci_high")
VERSIONED_PACKAGES = {"tvm": "apache-tvm", "xgboost": "xgboost", "torch": "torch"}


class ResultSchemaError(ValueError):
    pass


@dataclass
class EvaluationResult:
    model: str  # registry name
    model_config: dict[str, Any]
    checkpoint: str | None  # the checkpoint folder evaluated, None for a model used by name
    dataset_id: str  # the dataset folder's name
    dataset_sha256: str  # digest over the sha256 of every data file (see `dataset_digest`)
    dataset_files: int
    split: str  # "all" | "within_task" | "by_network" | "by_operator"
    split_side: str  # "test" for a scheme, "all" when split is "all"
    num_tasks: int
    num_programs: int
    metrics: dict[str, dict[str, float | None]]  # metric -> mean, weighted_mean, ci_low, ci_high
    per_task: dict[str, dict[str, float | None]]  # workload_id -> metric -> value
    versions: dict[str, str | None]
    git_commit: str | None
    created_at: str  # ISO 8601, UTC
    schema_version: str = RESULT_SCHEMA_VERSION
    notes: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # the row name in reports when set (e.g. "tlp fine-tuned (300)"); else `model`
    # True: the model trained on the evaluated tasks/records (scored with --allow-overlap; notes.overlap
    # says how much). None: not checkable (a checkpoint without ids in its training.json).
    contaminated: bool | None = False

    def to_dict(self) -> dict[str, Any]:
        return nan_to_none(dataclasses.asdict(self))

    def write(self, path: str) -> None:
        data = self.to_dict()
        validate_result(data)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True, allow_nan=False)


_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "model_config": (dict,), "checkpoint": (str, type(None)), "dataset_id": (str,),
    "dataset_sha256": (str,), "dataset_files": (int,), "split": (str,), "split_side": (str,),
    "num_tasks": (int,), "num_programs": (int,), "metrics": (dict,), "per_task": (dict,), "versions": (dict,),
    "git_commit": (str, type(None)), "created_at": (str,), "schema_version": (str,), "notes": (dict,),
}


def validate_result(data: dict) -> None:
    """Raise ResultSchemaError naming the first missing or wrongly typed field."""
    if not isinstance(data, dict):
        raise ResultSchemaError(f"a result is a JSON object, got {type(data).__name__}")
    for name, types in _TYPES.items():
        if name not in data:
            raise ResultSchemaError(f"missing field {name!r}")
        value = data[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ResultSchemaError(f"field {name!r} must be {expected}, got {type(value).__name__}")
    if not isinstance(data.get("label"), str | type(None)):  # optional: older files have none
        raise ResultSchemaError(f"field 'label' must be str or null, got {type(data['label']).__name__}")
    if not isinstance(data.get("contaminated", False), bool | type(None)):
        raise ResultSchemaError(f"field 'contaminated' must be true, false or null, got {data['contaminated']!r}")
    if data["split"] not in ("all", "within_task", "by_network", "by_operator"):
        raise ResultSchemaError(f"field 'split' is {data['split']!r}")
    if len(data["dataset_sha256"]) != 64:
        raise ResultSchemaError("field 'dataset_sha256' must be a hex sha256")
    missing = sorted(set(TASK_METRICS) - set(data["metrics"]))
    if missing:
        raise ResultSchemaError(f"metrics lack {missing}")
    for metric, entry in data["metrics"].items():
        for key in METRIC_FIELDS:
            if not isinstance(entry, dict) or key not in entry:
                raise ResultSchemaError(f"metrics[{metric!r}] lacks {key!r}")
            if not _is_number_or_null(entry[key]):
                raise ResultSchemaError(f"metrics[{metric!r}][{key!r}] must be a number or null")
    for task, values in data["per_task"].items():
        if not isinstance(values, dict) or not all(_is_number_or_null(v) for v in values.values()):
            raise ResultSchemaError(f"per_task[{task!r}] must map metric names to numbers or null")
    try:
        dt.datetime.fromisoformat(data["created_at"])
    except ValueError as exc:
        raise ResultSchemaError(f"field 'created_at' is not ISO 8601: {exc}") from exc


def _is_number_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def nan_to_none(value: Any) -> Any:
    """`value` with every non-finite float (in dicts and lists too) replaced by None, for JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    return value


def dataset_digest(root: str) -> tuple[str, int]:
    """sha256 over the sorted `"<sha256>  <path>"` lines of the dataset's data files, and their count.

    The digests are the files' own, computed here from their bytes (not copied from the folder's
    record), after the folder passes the integrity gate in full: a data file that disagrees with its
    manifest (collection folder) or checksums.sha256 (release folder), or is not listed there, raises
    DatasetIntegrityError. For an intact folder the lines equal the recorded ones, so the digest is
    the one the recorded checksums give.
    """
    from cwm_bench.rows.integrity import file_sha256, recorded_files, verify_folder
    from cwm_bench.rows.reader import layout_of

    layout = layout_of(root)
    verify_folder(root, "full", layout=layout)
    record, _, _ = recorded_files(root, layout)
    lines = sorted(f"{file_sha256(os.path.join(root, rel))}  {rel}" for rel in record)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest(), len(lines)


def package_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (importing torch just for this takes seconds)."""
    from cwm_bench import __version__

    out: dict[str, str | None] = {"cwm-bench": __version__}
    for key, dist in VERSIONED_PACKAGES.items():
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = None
    return out


def git_commit() -> str | None:
    """The commit of the cwm-bench checkout in use (None outside a git checkout); "+dirty" if modified."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit or None


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
