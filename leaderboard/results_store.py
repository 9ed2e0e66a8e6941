"""`leaderboard/results/<org>__<model>/<version>.json`: one file per submitted version, written whole
(never half) and only after every check passed; an existing version is replaced only with --force."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from cwm_bench.leaderboard.model_meta import ModelMeta

RESULTS_SCHEMA_VERSION = "1"
DEFAULT_RESULTS_DIR = os.path.join("leaderboard", "results")


class ResultExistsError(FileExistsError):
    pass


class LeaderboardResultError(ValueError):
    pass


def result_path(results_dir: str, meta: ModelMeta) -> str:
    return os.path.join(results_dir, meta.result_key(), f"{meta.version}.json")


def check_writable(path: str, force: bool) -> None:
    """Before any scoring: a version already on the board stays unless --force."""
    if os.path.exists(path) and not force:
        raise ResultExistsError(f"{path} exists: this version was submitted before; bump `version` in "
                                "model_meta.yaml, or pass --force to replace it")


def write_result(path: str, data: dict[str, Any], force: bool) -> None:
    """Write `data` whole at `path`: serialized and checked before the disk is touched; without
    `force`, a file that appeared meanwhile (a concurrent submit) is never replaced."""
    check_writable(path, force)
    validate_result(data, path)
    text = json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n"
    folder = os.path.dirname(path)
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".partial-", suffix=".json", dir=folder)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(staging, 0o644)
        if force:
            os.replace(staging, path)
        else:
            try:
                os.link(staging, path)  # fails if the file exists: first writer wins
            except FileExistsError:
                raise ResultExistsError(f"{path} appeared while this submission was scored; nothing was "
                                        "replaced (pass --force to replace it)") from None
    except BaseException:
        if created and os.path.isdir(folder):
            if os.path.exists(staging):
                os.unlink(staging)
            if not os.listdir(folder):
                os.rmdir(folder)
        raise
    finally:
        if os.path.exists(staging):
            os.unlink(staging)


_REQUIRED = ("schema_version", "meta", "evaluations", "live", "submitted_at", "submission_sha256", "versions",
             "git_commit", "isolation")


def validate_result(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise LeaderboardResultError(f"{where}: not a JSON object")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise LeaderboardResultError(f"{where}: missing {missing}")
    if data["schema_version"] != RESULTS_SCHEMA_VERSION:
        raise LeaderboardResultError(f"{where}: schema_version {data['schema_version']!r}, expected "
                                     f"{RESULTS_SCHEMA_VERSION!r}")
    if not isinstance(data["evaluations"], list) or not all(isinstance(e, dict) for e in data["evaluations"]):
        raise LeaderboardResultError(f"{where}: evaluations must be a list of objects")
    meta = data["meta"]
    if not isinstance(meta, dict) or any(k not in meta for k in ("name", "version", "code_url", "num_parameters",
                                                                 "submission")):
        raise LeaderboardResultError(f"{where}: meta must hold name, version, code_url, num_parameters, submission")
    for e in data["evaluations"]:
        for key in ("dataset_id", "dataset_sha256", "visibility", "split", "metrics", "contaminated"):
            if key not in e:
                raise LeaderboardResultError(f"{where}: an evaluation lacks {key!r}")
        if not isinstance(e["metrics"], dict):
            raise LeaderboardResultError(f"{where}: an evaluation's metrics must be an object")
    live = data["live"]
    if live is not None and (not isinstance(live, dict) or any(k not in live for k in (
            "speedup_geomean", "ci_low", "ci_high", "wins", "pairs", "budget", "tasks", "seeds"))):
        raise LeaderboardResultError(f"{where}: live must be null or hold speedup_geomean, ci_low, ci_high, wins, "
                                     "pairs, budget, tasks, seeds")


def load_results(results_dir: str) -> list[dict[str, Any]]:
    """Every result file under `results_dir` (sorted by path), each checked; one bad file is an error."""
    found = []
    for root, dirs, files in os.walk(results_dir):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".json") or name.startswith("."):
                continue
            path = os.path.join(root, name)
            try:
                with open(path) as handle:
                    data = json.load(handle)
            except (OSError, ValueError) as exc:
                raise LeaderboardResultError(f"{path}: not readable JSON ({exc})") from None
            validate_result(data, path)
            data["_path"] = os.path.relpath(path, results_dir)
            found.append(data)
    return found
