"""Who tunes: a cost model (ours, a plugin's, or TVM's own) in MetaSchedule's unchanged search.

A contender is named by what the user passes to `--model` / `--baselines`:

- a built-in baseline of `BASELINES` (data, not if-chains): `ansor` (TVM's `XGBModel` from scratch:
  the Ansor algorithm on today's TVM), `random` (random scores), `ansor-pretrained` (our `ansor-xgb`
  trained on a release, `--pretrained CKPT`);
- a checkpoint folder (`cwm-bench train --out CKPT`): frozen unless `online` (then refit on all of
  the run's measurements after every batch, as TVM refits its XGBModel);
- a registered model name (untrained): it starts from random scores and learns online.

`LABEL=SPEC` names the row in tables (default: the baseline name, the checkpoint's model name, or
the registered name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from cwm_bench.hardware import HardwareDescriptor


class ContenderError(ValueError):
    """A --model/--baselines entry that names nothing usable (one line)."""


@dataclass(frozen=True)
class BaselineSpec:
    kind: str  # "tvm-xgb" | "tvm-random" | "pretrained"
    description: str


BASELINES: dict[str, BaselineSpec] = {
    "ansor": BaselineSpec("tvm-xgb", "MetaSchedule's default search with TVM's own XGBModel trained from scratch "
                                     "(random scores until 100 measurements, as in TVM)"),
    "ansor-pretrained": BaselineSpec("pretrained", "our ansor-xgb trained on a release (TenSet's transfer "
                                                   "setting), frozen; the checkpoint comes from --pretrained"),
    "random": BaselineSpec("tvm-random", "the same search with random scores"),
}


@dataclass(frozen=True)
class Contender:
    """One row of a tuning table: how its MetaSchedule cost model is made, and what it was trained on."""

    label: str
    kind: str  # "tvm-xgb" | "tvm-random" | "checkpoint" | "registered" | "factory"
    spec: str  # the name or checkpoint folder the user gave
    checkpoint: str | None = None
    online: bool = False  # refit on the run's own measurements
    trained_on: tuple[dict, ...] = ()  # hardware rows ({hw_id, hw_name, hw_arch}) of its training data
    trained_workloads: frozenset[str] = field(default_factory=frozenset)  # task ids it was fitted on
    # kind "factory": makes the CostModel for each run (the leaderboard's sandboxed submissions), frozen
    factory: Any = field(default=None, compare=False, repr=False)

    def describe(self) -> dict:
        return {"label": self.label, "kind": self.kind, "spec": self.spec, "checkpoint": self.checkpoint,
                "online": self.online, "trained_on": list(self.trained_on)}

    def seen(self, workload_id: str) -> bool:
        """Whether the contender was trained on this task (then its row is not zero-shot)."""
        return workload_id in self.trained_workloads

    def cost_model(self, seed: int, workloads: dict, hardware: HardwareDescriptor, num_cores: int) -> Any:
        """A fresh MetaSchedule cost model for one run (no state shared between runs)."""
        from tvm.s_tir import meta_schedule as ms

        if self.kind == "tvm-xgb":
            return ms.cost_model.XGBModel(num_tuning_cores=num_cores)
        if self.kind == "tvm-random":
            return ms.cost_model.RandomModel(seed=seed)
        from cwm_bench.model import create_model, load_checkpoint
        from cwm_bench.model.metaschedule import as_metaschedule_cost_model

        if self.kind == "factory":
            model, refit = self.factory(), 0
        elif self.kind == "checkpoint":
            model, refit = load_checkpoint(self.checkpoint), 1 if self.online else 0
        else:
            model, refit = create_model(self.spec), 1
        return as_metaschedule_cost_model(model, workloads, refit_every=refit, hardware=hardware, seed=seed)


def parse_contender(entry: str, pretrained: str | None = None, online: bool = False) -> Contender:
    """`[LABEL=]SPEC` → Contender; ContenderError (one line) when SPEC names nothing."""
    label, _, spec = ("", "", entry) if os.path.isdir(entry) or "=" not in entry else entry.partition("=")
    spec = spec.strip()
    if not spec:
        raise ContenderError(f"{entry!r}: empty model")
    if spec in BASELINES:
        baseline = BASELINES[spec]
        if baseline.kind != "pretrained":
            return Contender(label or spec, baseline.kind, spec)
        if not pretrained:
            raise ContenderError("ansor-pretrained needs --pretrained CKPT: an ansor-xgb checkpoint trained on a "
                                 "release (cwm-bench train --model ansor-xgb --data RELEASE --split by_network "
                                 "--out CKPT)")
        found = _checkpoint(pretrained, label or spec, online)
        if found.kind != "checkpoint" or _model_name(pretrained) != "ansor-xgb":
            raise ContenderError(f"--pretrained {pretrained}: not an ansor-xgb checkpoint")
        return found
    if os.path.isdir(spec):
        return _checkpoint(spec, label, online)
    from cwm_bench.model.registry import UnknownModelError, model_class

    try:
        model_class(spec)
    except UnknownModelError as exc:
        raise ContenderError(f"{spec!r} is not a baseline ({', '.join(BASELINES)}), a checkpoint folder or a "
                             f"registered model: {exc}") from None
    return Contender(label or spec, "registered", spec, online=True)


def _model_name(folder: str) -> str:
    from cwm_bench.model.base import read_checkpoint_config

    try:
        return read_checkpoint_config(folder)[0]
    except (FileNotFoundError, ValueError) as exc:
        raise ContenderError(f"{folder}: not a checkpoint ({exc})") from None


def _checkpoint(folder: str, label: str, online: bool) -> Contender:
    from cwm_bench.model import CheckpointError
    from cwm_bench.model.training_record import read_training

    name = _model_name(folder)
    try:
        training = read_training(folder) or {}
    except CheckpointError as exc:
        raise ContenderError(str(exc)) from None
    return Contender(label or name, "checkpoint", folder, os.path.abspath(folder), online, training_hardware(training),
                     frozenset(training.get("workload_ids") or ()))


def training_hardware(training: dict) -> tuple[dict, ...]:
    """The hardware rows a checkpoint's training.json says it trained on (older records name only
    their dataset: then that dataset's hardware, when it is under ./datasets)."""
    return tuple(training.get("hardware") or _hardware_of_dataset(training.get("dataset_id")))


def _hardware_of_dataset(dataset_id: str | None) -> list[dict]:
    """For checkpoints written before training records named their hardware: the hardware of the
    dataset of that id under ./datasets, when it is there ([] otherwise: unknown)."""
    if not dataset_id:
        return []
    folder = os.path.join("datasets", dataset_id)
    if not os.path.isdir(folder):
        return []
    from cwm_bench.model.training_record import dataset_hardware

    return dataset_hardware(folder)
