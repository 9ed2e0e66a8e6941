"""The one cost-model contract: fit on records, score candidates (higher = predicted faster),
save/load a checkpoint folder without pickles."""

from __future__ import annotations

import abc
import json
import os
from typing import Any, ClassVar

import numpy as np

from cwm_bench.model.records import Records

CONFIG_FILE = "config.json"


class CostModel(abc.ABC):
    """Subclass, decorate with `@register_model("name")`, implement `fit`, `score`, `save_weights`,
    `load_weights`. Constructor keyword arguments are the model's config (JSON-serializable)."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any] | None] = None  # when set: options are checked and defaults filled in

    def __init__(self, **config: Any):
        if self.defaults is not None:
            unknown = sorted(set(config) - set(self.defaults))
            if unknown:
                raise ValueError(f"unknown {self.name or type(self).__name__} option(s) {unknown}; "
                                 f"valid: {sorted(self.defaults)}")
            config = {**self.defaults, **config}
        self.config: dict[str, Any] = config

    @abc.abstractmethod
    def fit(self, train: Records, progress: bool = True) -> None:
        """Learn from labelled records (`train.latency()`), typically ranking within each task."""

    @abc.abstractmethod
    def score(self, records: Records) -> np.ndarray:
        """One float per record; higher means predicted faster. Compared only within a task."""

    def save_weights(self, folder: str) -> None:  # noqa: B027  (models without weights need nothing)
        """Write learned state into `folder` (safetensors, XGBoost JSON, ...: never pickle)."""

    def load_weights(self, folder: str) -> None:  # noqa: B027
        """Read what `save_weights` wrote."""

    def save(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, CONFIG_FILE), "w") as handle:
            json.dump({"model": self.name, "config": self.config}, handle, indent=1, sort_keys=True)
        self.save_weights(folder)


def load_checkpoint(folder: str) -> CostModel:
    """Rebuild a saved model: its registered class from config.json, then its weights."""
    from cwm_bench.model.registry import create_model

    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{folder}: no {CONFIG_FILE}; not a cwm-bench checkpoint")
    with open(path) as handle:
        saved = json.load(handle)
    model = create_model(saved["model"], **saved["config"])
    model.load_weights(folder)
    return model
