"""A submission folder, checked before anything of it runs: metadata, files, no pickles."""

from __future__ import annotations

import csv
import hashlib
import os
import stat
from dataclasses import dataclass

import numpy as np

from cwm_bench.leaderboard.model_meta import (
    PICKLE_SUFFIXES,
    CodeSubmission,
    ModelMeta,
    ModelMetaError,
    PredictionsSubmission,
    load_model_meta,
)

META_FILE = "model_meta.yaml"
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


class SubmissionFormatError(ValueError):
    """A submission folder that cannot be scored (one line naming the file)."""


@dataclass(frozen=True)
class Submission:
    folder: str
    meta: ModelMeta

    @property
    def code(self) -> CodeSubmission | None:
        return self.meta.submission if isinstance(self.meta.submission, CodeSubmission) else None

    @property
    def predictions(self) -> PredictionsSubmission | None:
        return self.meta.submission if isinstance(self.meta.submission, PredictionsSubmission) else None

    def path(self, relative: str) -> str:
        return os.path.join(self.folder, relative)

    def digest(self) -> str:
        """sha256 over the submission's files (names and bytes), as scored."""
        digest = hashlib.sha256()
        for root, dirs, files in os.walk(self.folder):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", ".git"))
            for name in sorted(files):
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, self.folder).encode() + b"\0")
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
        return digest.hexdigest()


def load_submission(folder: str) -> Submission:
    """Read model_meta.yaml and check the files it names; SubmissionFormatError/ModelMetaError otherwise."""
    if not os.path.isdir(folder):
        raise SubmissionFormatError(f"{folder}: not a folder")
    meta_path = os.path.join(folder, META_FILE)
    if not os.path.exists(meta_path):
        raise SubmissionFormatError(f"{folder}: no {META_FILE} (leaderboard/README.md shows one)")
    _refuse_special_files(folder)
    meta = load_model_meta(meta_path)
    submission = Submission(os.path.abspath(folder), meta)
    sub = meta.submission
    if isinstance(sub, CodeSubmission):
        include = submission.path(sub.include)
        if not os.path.exists(include) and (sub.include.endswith((".py", ".whl")) or "/" in sub.include):
            raise ModelMetaError(f"{meta_path}.submission.include: {sub.include} is not in the submission")
        checkpoint = submission.path(sub.checkpoint)
        if not os.path.isfile(os.path.join(checkpoint, "config.json")):
            raise ModelMetaError(f"{meta_path}.submission.checkpoint: {sub.checkpoint} is not a checkpoint folder "
                                 "(no config.json; `cwm-bench train --out` writes one)")
        _refuse_pickles(checkpoint)
    else:
        if not os.path.isfile(submission.path(sub.file)):
            raise ModelMetaError(f"{meta_path}.submission.file: {sub.file} is not in the submission")
    return submission


MAX_SUBMISSION_BYTES = 2 << 30


def _refuse_special_files(folder: str, limit: int = MAX_SUBMISSION_BYTES) -> None:
    """Only plain files and folders: a symlink could make the harness copy (and hand the sandbox) a
    file from anywhere, a FIFO would hang it, a device would fill its disk."""
    total = 0
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = os.path.join(root, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise SubmissionFormatError(f"{path}: a symbolic link; a submission holds plain files only")
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise SubmissionFormatError(f"{path}: not a plain file or folder")
            if stat.S_ISREG(mode):
                total += os.lstat(path).st_size
    if total > limit:
        raise SubmissionFormatError(f"{folder}: {total / 2**30:.1f} GiB; a submission may hold at most "
                                    f"{limit / 2**30:.0f} GiB")


def _refuse_pickles(folder: str) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                head = handle.read(2)
            if name.endswith(PICKLE_SUFFIXES) or head in _PICKLE_MAGIC:
                raise SubmissionFormatError(f"{path}: looks like a pickle; checkpoints hold safetensors or JSON "
                                            "(loading a pickle runs code)")


def read_predictions(path: str, record_ids: list[str]) -> np.ndarray:
    """Scores in the order of `record_ids` from a `record_id,score` CSV that must name each of them
    exactly once, with finite scores; SubmissionFormatError naming the first problem otherwise."""
    wanted = {rid: i for i, rid in enumerate(record_ids)}
    scores = np.full(len(record_ids), np.nan)
    seen = np.zeros(len(record_ids), dtype=bool)
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != ["record_id", "score"]:
                raise SubmissionFormatError(f"{path}: the header must be 'record_id,score', got {header}")
            for line, row in enumerate(reader, start=2):
                if len(row) != 2:
                    raise SubmissionFormatError(f"{path}:{line}: expected 2 fields, got {len(row)}")
                rid, value = row[0].strip(), row[1].strip()
                if rid not in wanted:
                    raise SubmissionFormatError(f"{path}:{line}: record_id {rid!r} is not on the evaluated test side")
                i = wanted[rid]
                if seen[i]:
                    raise SubmissionFormatError(f"{path}:{line}: record_id {rid!r} appears twice")
                try:
                    score = float(value)
                except ValueError:
                    raise SubmissionFormatError(f"{path}:{line}: score {value!r} is not a number") from None
                if not np.isfinite(score):
                    raise SubmissionFormatError(f"{path}:{line}: score {value!r} is not finite")
                scores[i], seen[i] = score, True
    except (OSError, UnicodeDecodeError) as exc:
        raise SubmissionFormatError(f"{path}: cannot read ({exc})") from None
    if not seen.all():
        missing = record_ids[int(np.flatnonzero(~seen)[0])]
        raise SubmissionFormatError(f"{path}: {int((~seen).sum())} of the {len(record_ids)} test records have no score "
                                    f"(first: {missing})")
    return scores
