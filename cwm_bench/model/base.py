"""The one cost-model contract: fit on records, score candidates (higher = predicted faster),
save/load a checkpoint folder without pickles."""

from __future__ import annotations

import abc
import json
import os
from typing import Any, ClassVar

import numpy as np

from cwm_bench.model.records import ALL_INPUTS, Records
from cwm_bench.rows.integrity import one_line

CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be read: the message is one line naming the file."""


class CheckpointMismatchError(ValueError):
    """A checkpoint cannot start the requested training: another model, or a config it cannot honour."""


class CostModel(abc.ABC):
    """Subclass, decorate with `@register_model("name")`, implement `fit`, `score`, `save_weights`,
    `load_weights` (and `fine_tune` to continue training from a checkpoint). Constructor keyword
    arguments are the model's config (JSON-serializable).

    `inputs` declares the input groups the model reads (`cwm_bench.model.records.INPUT_GROUPS`:
    record_id, trace, actions, features, hardware); only those are computed and passed to `fit` and
    `score`, offline and live. Declare as few as the model needs: per-store features cost ~4 ms a
    candidate in the search."""

    name: ClassVar[str] = ""
    inputs: ClassVar[frozenset[str]] = ALL_INPUTS
    defaults: ClassVar[dict[str, Any] | None] = None  # when set: options are checked and defaults filled in
    trainable: ClassVar[bool] = True  # False: nothing to learn (floors), usable without a checkpoint
    # Options that may differ from a checkpoint's when training continues from it (training
    # hyper-parameters). Every other option fixes what the saved weights mean, so it must match.
    fine_tune_options: ClassVar[frozenset[str]] = frozenset()

    # Ranges of numeric options: name -> (low, high, "[]" | "[)" | "(]" | "()"); None = unbounded.
    option_ranges: ClassVar[dict[str, tuple[float | None, float | None, str]]] = {}
    # Types of options whose default is None (they also accept None), e.g. {"nthread": int}.
    option_types: ClassVar[dict[str, type]] = {}

    def __init__(self, **config: Any):
        if self.defaults is not None:
            unknown = sorted(set(config) - set(self.defaults))
            if unknown:
                raise ValueError(f"unknown {self.name or type(self).__name__} option(s) {unknown}; "
                                 f"valid: {sorted(self.defaults)}")
            config = {**self.defaults, **config}
            for key, value in config.items():
                check_option(self.name or type(self).__name__, key, value, self.defaults[key],
                             self.option_types.get(key), self.option_ranges.get(key))
        self.config: dict[str, Any] = config

    @abc.abstractmethod
    def fit(self, train: Records, progress: bool = True) -> None:
        """Learn from labelled records (`train.latency()`), typically ranking within each task."""

    @abc.abstractmethod
    def score(self, records: Records) -> np.ndarray:
        """One float per record; higher means predicted faster. Compared only within a task."""

    def fine_tune(self, train: Records, progress: bool = True) -> None:
        """Continue training the current state (a loaded checkpoint) on `train`, e.g. another
        hardware's records. Models with nothing to learn do nothing; others must override this."""
        if self.trainable:
            raise NotImplementedError(f"{self.name or type(self).__name__} cannot continue training from a "
                                      f"checkpoint; train it from scratch instead")

    def save_weights(self, folder: str) -> None:  # noqa: B027  (models without weights need nothing)
        """Write learned state into `folder` (safetensors, XGBoost JSON, ...: never pickle)."""

    def load_weights(self, folder: str) -> None:  # noqa: B027
        """Read what `save_weights` wrote."""

    def save(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, CONFIG_FILE), "w") as handle:
            # "class" says where the code lives, for the error when a fresh process lacks the plugin
            json.dump({"model": self.name, "config": self.config,
                       "class": f"{type(self).__module__}:{type(self).__qualname__}"}, handle, indent=1, sort_keys=True)
        self.save_weights(folder)


def check_option(model: str, key: str, value: Any, default: Any, declared: type | None,
                 bounds: tuple[float | None, float | None, str] | None) -> None:
    """ValueError naming the option when `value` has another type than the default's (an int where a
    float is expected is fine) or lies outside `bounds`."""
    if value is None and default is None:
        return
    if default is None and declared is None:
        return  # a None default with no declared type (`option_types`) says nothing about the type
    expected = declared or type(default)
    ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ValueError(f"{model} option {key!r} must be {expected.__name__}"
                         f"{' or null' if default is None else ''}, got {value!r}")
    if bounds is not None and isinstance(value, int | float):
        low, high, kind = bounds
        below = low is not None and (value < low if kind[0] == "[" else value <= low)
        above = high is not None and (value > high if kind[1] == "]" else value >= high)
        if below or above:
            interval = f"{kind[0]}{'-inf' if low is None else low}, {'inf' if high is None else high}{kind[1]}"
            raise ValueError(f"{model} option {key!r} must be in {interval}, got {value!r}")


def read_json_object(path: str) -> dict[str, Any]:
    """A checkpoint file holding one JSON object; CheckpointError naming the file otherwise."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({one_line(exc)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: must hold a JSON object, got {type(data).__name__}")
    return data


def _saved(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{folder}: no {CONFIG_FILE}; not a cwm-bench checkpoint")
    saved = read_json_object(path)
    if not isinstance(saved.get("model"), str) or not isinstance(saved.get("config"), dict):
        raise CheckpointError(f'{path}: needs "model" (a name) and "config" (an object); has {sorted(saved)}')
    return saved


def read_checkpoint_config(folder: str) -> tuple[str, dict[str, Any]]:
    """The model name and config a checkpoint folder was saved with (CheckpointError when unreadable)."""
    saved = _saved(folder)
    return saved["model"], saved["config"]


def checkpoint_class_path(folder: str) -> str | None:
    """The "module:Class" a checkpoint was saved from (None for checkpoints older than that field)."""
    return _saved(folder).get("class")


def load_checkpoint(folder: str, model: str | None = None, overrides: dict[str, Any] | None = None) -> CostModel:
    """Rebuild a saved model: its registered class from config.json, then its weights.

    To continue training, name the `model` expected and any `overrides` of its config: a checkpoint of
    another model, or an override of an option outside the class's `fine_tune_options`, raises
    `CheckpointMismatchError`."""
    from cwm_bench.model.registry import UnknownModelError, create_model, model_class

    name, config = read_checkpoint_config(folder)
    try:
        model_class(name)
    except UnknownModelError:
        where = checkpoint_class_path(folder)
        raise UnknownModelError(
            f"{folder} is a checkpoint of model {name!r}" + (f" ({where})" if where else "")
            + ", which is not registered here: pass --include with the module or file that defines it, or install "
            "the package that provides it (entry-point group cwm_bench.models)") from None
    if model is not None and model != name:
        raise CheckpointMismatchError(f"{folder} is a {name!r} checkpoint, not {model!r}")
    overrides = overrides or {}
    if overrides:
        allowed = model_class(name).fine_tune_options
        fixed = sorted(k for k, v in overrides.items() if k in config and config[k] != v and k not in allowed)
        if fixed:
            raise CheckpointMismatchError(
                f"{name}: option(s) {fixed} differ from the checkpoint's ("
                + ", ".join(f"{k}={config[k]!r}" for k in fixed) + "); only "
                + (", ".join(sorted(allowed)) or "none") + " may change when training continues")
    try:
        instance = create_model(name, **{**config, **overrides})
    except (TypeError, ValueError) as exc:
        if overrides:
            raise
        raise CheckpointError(f"{os.path.join(folder, CONFIG_FILE)}: {exc}") from None
    try:
        instance.load_weights(folder)
    except Exception as exc:  # noqa: BLE001  (missing, cut or foreign weight files: one line, not a C++ stack)
        raise CheckpointError(f"{folder}: cannot load the {name} weights "
                              f"({type(exc).__name__}: {one_line(exc)[:200]})") from None
    return instance
