"""`model_meta.yaml`: what a leaderboard submission says about itself, checked by a strict schema.

Unknown fields are refused (a typo must not vanish silently), and every error names the field:

    name: my-lab/my-model          # <org>/<model>: results go to leaderboard/results/my-lab__my-model/
    version: "1.0"
    authors: [Ada Lovelace]
    description: One paragraph on what the model is.
    license: apache-2.0
    code_url: https://github.com/my-lab/my-model
    paper: https://arxiv.org/abs/...        # optional
    num_parameters: 120000
    training_data:                           # every dataset side it was fitted on ([] for none)
      - {dataset: cwm-bench-cpu-v0, split: by_network, side: train}
    submission:                              # code: the plugin path, with a checkpoint
      kind: code
      include: my_model.py                   # a .py file, a package folder, a pure-Python wheel, or a module
      module: my_model                       # with a wheel: the module to import from it
      checkpoint: checkpoint                 # folder written by `cwm-bench train` (safetensors/JSON, no pickle)
    # or predictions for one public test side:
    # submission: {kind: predictions, file: predictions.csv, dataset: cwm-bench-cpu-v0, split: by_network}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

SPLITS = ("all", "within_task", "by_network", "by_operator")
SIDES = ("train", "test", "all")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".npy", ".ckpt")


class ModelMetaError(ValueError):
    """One line naming the file and the bad field."""


@dataclass(frozen=True)
class TrainingData:
    dataset: str
    split: str
    side: str = "train"


@dataclass(frozen=True)
class CodeSubmission:
    include: str  # relative to the submission folder
    checkpoint: str
    module: str | None = None  # the module to import from a wheel


@dataclass(frozen=True)
class PredictionsSubmission:
    file: str
    dataset: str
    split: str


@dataclass(frozen=True)
class ModelMeta:
    name: str
    version: str
    authors: tuple[str, ...]
    description: str
    license: str
    code_url: str
    num_parameters: int
    training_data: tuple[TrainingData, ...]
    submission: CodeSubmission | PredictionsSubmission
    paper: str | None = None

    @property
    def org(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def model(self) -> str:
        return self.name.split("/", 1)[1]

    @property
    def kind(self) -> str:
        return "code" if isinstance(self.submission, CodeSubmission) else "predictions"

    def result_key(self) -> str:
        """The folder name under leaderboard/results/."""
        return f"{self.org}__{self.model}"

    def to_dict(self) -> dict[str, Any]:
        sub = self.submission
        submission = ({"kind": "code", "include": sub.include, "checkpoint": sub.checkpoint,
                       **({"module": sub.module} if sub.module else {})}
                      if isinstance(sub, CodeSubmission) else
                      {"kind": "predictions", "file": sub.file, "dataset": sub.dataset, "split": sub.split})
        return {"name": self.name, "version": self.version, "authors": list(self.authors),
                "description": self.description, "license": self.license, "code_url": self.code_url,
                "paper": self.paper, "num_parameters": self.num_parameters,
                "training_data": [{"dataset": t.dataset, "split": t.split, "side": t.side} for t in self.training_data],
                "submission": submission}


_TOP = {"name": str, "version": str, "authors": list, "description": str, "license": str, "code_url": str,
        "paper": (str, type(None)), "num_parameters": int, "training_data": list, "submission": dict}
_REQUIRED = ("name", "version", "authors", "description", "license", "code_url", "num_parameters",
             "training_data", "submission")


def _type_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", list: "a list", dict: "a mapping", type(None): "null"}
    return " or ".join(names[k] for k in kinds)


def _check_fields(where: str, data: dict, allowed: dict, required: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ModelMetaError(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in data:
            raise ModelMetaError(f"{where}: missing field {key!r}")
    for key, value in data.items():
        kind = allowed[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ModelMetaError(f"{where}.{key}: must be {_type_name(kind)}, got {value!r}")
        if isinstance(value, str) and str in kinds and not value.strip():
            raise ModelMetaError(f"{where}.{key}: must not be empty")


def _relative(where: str, path: str) -> str:
    if path.startswith("/") or ".." in path.replace("\\", "/").split("/"):
        raise ModelMetaError(f"{where}: must be a path inside the submission folder, got {path!r}")
    return path


def parse_model_meta(data: Any, source: str = "model_meta.yaml") -> ModelMeta:
    """A ModelMeta from parsed YAML; ModelMetaError naming `source` and the field otherwise."""
    if not isinstance(data, dict):
        raise ModelMetaError(f"{source}: must hold a mapping of fields, got {type(data).__name__}")
    _check_fields(source, data, _TOP, _REQUIRED)
    if not NAME_RE.match(data["name"]) or "__" in data["name"]:
        raise ModelMetaError(f"{source}.name: must be '<org>/<model>' (letters, digits, _ . -; no '__', which "
                             f"separates them in result paths), got {data['name']!r}")
    if not VERSION_RE.match(data["version"]):
        raise ModelMetaError(f"{source}.version: letters, digits and _ . + - only, got {data['version']!r}")
    authors = data["authors"]
    if not authors or not all(isinstance(a, str) and a.strip() for a in authors):
        raise ModelMetaError(f"{source}.authors: must be a non-empty list of names")
    if data["num_parameters"] < 0:
        raise ModelMetaError(f"{source}.num_parameters: must be >= 0, got {data['num_parameters']}")
    if not re.match(r"^https?://", data["code_url"]):
        raise ModelMetaError(f"{source}.code_url: must be an http(s) URL, got {data['code_url']!r}")
    training = []
    for i, entry in enumerate(data["training_data"]):
        where = f"{source}.training_data[{i}]"
        if not isinstance(entry, dict):
            raise ModelMetaError(f"{where}: must be a mapping with dataset, split (and side)")
        _check_fields(where, entry, {"dataset": str, "split": str, "side": str}, ("dataset", "split"))
        if entry["split"] not in SPLITS:
            raise ModelMetaError(f"{where}.split: one of {', '.join(SPLITS)}, got {entry['split']!r}")
        side = entry.get("side", "all" if entry["split"] == "all" else "train")
        if side not in SIDES:
            raise ModelMetaError(f"{where}.side: one of {', '.join(SIDES)}, got {side!r}")
        training.append(TrainingData(entry["dataset"], entry["split"], side))
    return ModelMeta(data["name"], data["version"], tuple(authors), data["description"], data["license"],
                     data["code_url"], data["num_parameters"], tuple(training),
                     _submission(f"{source}.submission", data["submission"]), data.get("paper"))


def _submission(where: str, sub: dict) -> CodeSubmission | PredictionsSubmission:
    kind = sub.get("kind")
    if kind == "code":
        _check_fields(where, sub, {"kind": str, "include": str, "module": str, "checkpoint": str},
                      ("kind", "include", "checkpoint"))
        include = _relative(f"{where}.include", sub["include"])
        if include.endswith(".whl") and not sub.get("module"):
            raise ModelMetaError(f"{where}.module: a wheel needs the module to import from it")
        return CodeSubmission(include, _relative(f"{where}.checkpoint", sub["checkpoint"]), sub.get("module"))
    if kind == "predictions":
        _check_fields(where, sub, {"kind": str, "file": str, "dataset": str, "split": str},
                      ("kind", "file", "dataset", "split"))
        if sub["split"] not in SPLITS[1:]:
            raise ModelMetaError(f"{where}.split: a public split scheme ({', '.join(SPLITS[1:])}), "
                                 f"got {sub['split']!r}")
        return PredictionsSubmission(_relative(f"{where}.file", sub["file"]), sub["dataset"], sub["split"])
    raise ModelMetaError(f"{where}.kind: 'code' or 'predictions', got {kind!r}")


def load_model_meta(path: str) -> ModelMeta:
    """Read and check a model_meta.yaml (one-line ModelMetaError on any problem)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise ModelMetaError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ModelMetaError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ModelMetaError(f"{path}: not valid YAML{at} ({getattr(exc, 'problem', None) or exc})") from None
    return parse_model_meta(data, path)


def declared_overlap(meta: ModelMeta, dataset_id: str, split: str) -> str | None:
    """Why the metadata's own training_data overlaps the test side of (dataset, split), or None.

    Training on the same scheme's train side is clean; any other side of the same dataset (its test
    side, `all`, or another scheme's train side, which holds this scheme's test tasks) is not."""
    for entry in meta.training_data:
        if entry.dataset != dataset_id:
            continue
        if entry.split == split and entry.side == "train":
            continue
        return f"model_meta.yaml declares training on {entry.dataset} {entry.split} ({entry.side} side)"
    return None
