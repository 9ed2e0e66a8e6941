"""model_meta.yaml: the README's example is valid; every kind of mistake names its field."""

from __future__ import annotations

import copy
import os
import re

import pytest
import yaml

from cwm_bench.leaderboard.model_meta import ModelMetaError, declared_overlap, parse_model_meta
from cwm_bench.metrics.ranking import METRIC_DIRECTION, TASK_METRICS

README = os.path.join(os.path.dirname(__file__), "..", "..", "leaderboard", "README.md")


def readme_meta() -> dict:
    with open(README) as handle:
        block = re.search(r"```yaml\n(.*?)```", handle.read(), re.S)
    assert block, "leaderboard/README.md has no yaml block"
    return yaml.safe_load(block.group(1))


def test_the_readme_example_is_valid():
    meta = parse_model_meta(readme_meta())
    assert (meta.org, meta.model, meta.kind) == ("my-lab", "action-ridge", "code")
    assert meta.result_key() == "my-lab__action-ridge"
    assert parse_model_meta(meta.to_dict()) == meta  # round trip


def _with(change) -> dict:
    data = copy.deepcopy(readme_meta())
    change(data)
    return data


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(licence="mit"), "unknown field 'licence'"),
    (lambda d: d.pop("version"), "missing field 'version'"),
    (lambda d: d.update(num_parameters="many"), "num_parameters: must be an integer"),
    (lambda d: d.update(num_parameters=True), "num_parameters: must be an integer"),
    (lambda d: d.update(name="no-org"), "name: must be '<org>/<model>'"),
    (lambda d: d.update(version="1 0"), "version:"),
    (lambda d: d.update(authors=[]), "authors: must be a non-empty list"),
    (lambda d: d.update(code_url="github.com/x"), "code_url: must be an http(s) URL"),
    (lambda d: d["training_data"][0].update(split="random"), "training_data[0].split"),
    (lambda d: d["training_data"][0].update(epochs=3), "training_data[0]: unknown field 'epochs'"),
    (lambda d: d["submission"].update(kind="docker"), "submission.kind"),
    (lambda d: d["submission"].update(checkpoint="../elsewhere"), "submission.checkpoint: must be a path inside"),
    (lambda d: d["submission"].update(include="dist/m-1.0-py3-none-any.whl"), "submission.module: a wheel needs"),
    (lambda d: d.update(submission={"kind": "predictions", "file": "p.csv", "dataset": "x", "split": "all"}),
     "submission.split: a public split scheme"),
])
def test_a_bad_field_is_refused_by_name(change, field):
    with pytest.raises(ModelMetaError) as info:
        parse_model_meta(_with(change), "sub/model_meta.yaml")
    message = str(info.value)
    assert field in message and message.startswith("sub/model_meta.yaml") and "\n" not in message


def test_declared_training_overlap():
    meta = parse_model_meta(readme_meta())  # trained on h200-v0 within_task (train side)
    assert declared_overlap(meta, "cwm-bench-h200-v0", "within_task") is None
    assert "within_task" in declared_overlap(meta, "cwm-bench-h200-v0", "by_network")  # holds its test tasks
    assert declared_overlap(meta, "cwm-bench-cpu-v0", "by_network") is None  # other data: the ids decide
    test_side = parse_model_meta(_with(lambda d: d["training_data"][0].update(side="test")))
    assert "test side" in declared_overlap(test_side, "cwm-bench-h200-v0", "within_task")


def test_every_metric_has_a_direction():
    assert set(METRIC_DIRECTION) == set(TASK_METRICS)
    assert set(METRIC_DIRECTION.values()) <= {"higher", "lower"}


def test_org_and_model_cannot_collide_in_result_paths():
    with pytest.raises(ModelMetaError, match="no '__'"):
        parse_model_meta(_with(lambda d: d.update(name="a__b/c")))
