"""Did a checkpoint train on what it is evaluated on? Read from its `training.json` (written by
`cwm-bench train`; `init_training` nests the checkpoint it was fine-tuned from, checked too).

Ids are compared, not dataset names: a `record_id` names one program on every hardware and a
`workload_id` one task, so training on another release's records of the test tasks counts as well.

- task-level schemes (`by_network`, `by_operator`): a test task among the tasks trained on;
- `within_task` and `all`: a test record among the records trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

TASK_LEVEL_SCHEMES = ("by_network", "by_operator")


@dataclass(frozen=True)
class Overlap:
    """What a checkpoint shares with an evaluated side. `checked` is False when its training.json
    predates the ids (then nothing can be said)."""

    checked: bool
    level: str  # "task" or "record": what the scheme forbids sharing
    shared_tasks: int
    shared_records: int
    test_tasks: int
    test_records: int
    reason: str = ""

    @property
    def contaminated(self) -> bool | None:
        if not self.checked:
            return None
        return (self.shared_tasks if self.level == "task" else self.shared_records) > 0

    def describe(self) -> str:
        if not self.checked:
            return self.reason
        if self.level == "task":
            return f"trained on {self.shared_tasks} of the {self.test_tasks} test tasks"
        return f"trained on {self.shared_records:,} of the {self.test_records:,} test records"

    def to_dict(self) -> dict:
        return {"checked": self.checked, "level": self.level, "shared_tasks": self.shared_tasks,
                "shared_records": self.shared_records, "test_tasks": self.test_tasks,
                "test_records": self.test_records, **({"reason": self.reason} if self.reason else {})}


def trained_ids(training: dict) -> tuple[set[str], set[str]] | None:
    """(workload ids, record ids) of every training stage of a checkpoint; None if any stage's
    training.json lacks them."""
    tasks: set[str] = set()
    records: set[str] = set()
    stage: dict | None = training
    while stage:
        if "workload_ids" not in stage or "record_ids" not in stage:
            return None
        tasks.update(stage["workload_ids"])
        records.update(stage["record_ids"])
        if stage.get("init") and not stage.get("init_training"):
            return None  # fine-tuned from a checkpoint that did not say what it trained on
        stage = stage.get("init_training")
    return tasks, records


def overlap(training: dict | None, scheme: str, test_task_ids, test_record_ids, trained: bool = True) -> Overlap:
    """The overlap of a model's training with the evaluated records. `trained=False`: a model that
    learns nothing (random, flops); else `training` is its checkpoint's training.json (None if absent)."""
    level = "task" if scheme in TASK_LEVEL_SCHEMES else "record"
    tasks, records = set(test_task_ids), set(test_record_ids)
    if not trained:
        return Overlap(True, level, 0, 0, len(tasks), len(records))
    ids = None if training is None else trained_ids(training)
    if ids is None:
        reason = ("no training.json says what it trained on" if training is None else
                  "its training.json (or that of the checkpoint it was fine-tuned from) lacks the workload and "
                  "record ids (retrain to check)")
        return Overlap(False, level, 0, 0, len(tasks), len(records), reason=reason)
    seen_tasks, seen_records = ids
    return Overlap(True, level, len(tasks & seen_tasks), len(records & seen_records), len(tasks), len(records))
