"""A broken checkpoint, a bad training.json or a wrong --out is one line, exit != 0, nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
from click.testing import CliRunner

from cwm_bench.cli import main

QUICK = json.dumps({"num_boost_round": 5, "early_stopping_rounds": 5, "nthread": 1})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_dataset):
    out = tmp_path_factory.mktemp("good") / "ckpt"
    result = CliRunner().invoke(main, ["train", "--model", "ansor-xgb", "--data", tiny_dataset, "--split", "all",
                                       "--config", QUICK, "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    return str(out)


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def _cut(path):
    with open(path) as handle:
        text = handle.read()
    _write(path, text[: len(text) // 2])


CASES = {
    "config.json is a list": (lambda d: _write(f"{d}/config.json", "[1, 2]"), "must hold a JSON object, got list"),
    "config.json lacks model": (lambda d: _write(f"{d}/config.json", '{"config": {}}'), 'needs "model"'),
    "config.json is cut": (lambda d: _cut(f"{d}/config.json"), "config.json: not readable JSON"),
    "model.json is missing": (lambda d: os.remove(f"{d}/model.json"), "cannot load the ansor-xgb weights"),
    "model.json is cut": (lambda d: _cut(f"{d}/model.json"), "cannot load the ansor-xgb weights"),
    "training.json is cut": (lambda d: _cut(f"{d}/training.json"), "training.json: not readable JSON"),
    "training.json is a list": (lambda d: _write(f"{d}/training.json", "[]"), "must hold a JSON object, got list"),
    "training.json ids are not ids": (
        lambda d: _write(f"{d}/training.json", json.dumps({"workload_ids": 3, "record_ids": []})),
        "'workload_ids' must be a list of ids"),
}


def _digest(folder: str) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_checkpoint_is_one_line_and_writes_no_result(case, checkpoint, tiny_dataset, tmp_path):
    broken = str(tmp_path / "ckpt")
    shutil.copytree(checkpoint, broken)
    corrupt, message = CASES[case]
    corrupt(broken)
    before = _digest(broken)
    result = CliRunner().invoke(main, ["evaluate", "--model", broken, "--data", tiny_dataset, "--split", "all",
                                       "--allow-overlap", "--json", str(tmp_path / "r.json")])
    print(f"{case:<32} exit {result.exit_code}  {result.output.strip().splitlines()[-1]}")
    assert result.exit_code != 0 and message in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert not (tmp_path / "r.json").exists() and _digest(broken) == before


def test_out_may_not_be_a_dataset_or_a_foreign_folder(tiny_dataset, tmp_path):
    before = _digest(tiny_dataset)
    for out, message in ((tiny_dataset, "is a dataset folder (it has manifest.json)"),
                         (str(tmp_path), "is neither empty nor a checkpoint")):
        (tmp_path / "notes.txt").write_text("mine")
        result = CliRunner().invoke(main, ["train", "--model", "ansor-xgb", "--data", tiny_dataset, "--split", "all",
                                           "--config", QUICK, "--out", out])
        assert result.exit_code == 2 and message in result.output, result.output
    assert _digest(tiny_dataset) == before and (tmp_path / "notes.txt").read_text() == "mine"


def test_training_over_another_checkpoint_replaces_it_whole(checkpoint, tiny_dataset, tmp_path):
    out = str(tmp_path / "ckpt")
    shutil.copytree(checkpoint, out)
    result = CliRunner().invoke(main, ["train", "--model", "random", "--data", tiny_dataset, "--split", "all",
                                       "--out", out])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ["config.json", "training.json"]  # no stale model.json of the xgb model
    assert json.loads(open(f"{out}/config.json").read())["model"] == "random"
    assert not [n for n in os.listdir(tmp_path) if n.startswith((".partial-", ".old-"))]
