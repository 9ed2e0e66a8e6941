"""A checkpoint evaluated on tasks (task-level splits) or records (within_task, all) it trained on is
refused, or scored and marked with --allow-overlap."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from cwm_bench.cli import main
from cwm_bench.model.contamination import overlap
from cwm_bench.results_report import report

RELEASE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "cwm-bench-h200-v0"))
QUICK = json.dumps({"num_boost_round": 5, "early_stopping_rounds": 5, "nthread": 1})


def _train(tmp_path, name: str, split: str, *extra: str) -> str:
    out = str(tmp_path / name)
    result = CliRunner().invoke(main, ["train", "--model", "ansor-xgb", "--data", RELEASE, "--split", split,
                                       "--config", QUICK, "--max-train-records", "200", "--out", out,
                                       "--no-progress", *extra])
    assert result.exit_code == 0, result.output
    return out


def _evaluate(checkpoint: str, split: str, out, *extra: str):
    return CliRunner().invoke(main, ["evaluate", "--model", checkpoint, "--data", RELEASE, "--split", split,
                                     "--json", str(out), *extra])


@pytest.fixture(scope="module")
def within_task_checkpoint(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("ckpt"), "within", "within_task")


def test_training_json_lists_the_tasks_and_records_fitted(within_task_checkpoint):
    training = json.loads(open(os.path.join(within_task_checkpoint, "training.json")).read())
    assert len(training["record_ids"]) == training["records"] == 200
    assert len(training["workload_ids"]) == training["tasks"] > 1


def test_a_task_level_test_side_the_checkpoint_trained_on_is_refused_then_marked(within_task_checkpoint, tmp_path):
    refused = _evaluate(within_task_checkpoint, "by_network", tmp_path / "r.json")
    assert refused.exit_code == 1 and not (tmp_path / "r.json").exists()
    line = refused.output.strip()
    assert "\n" not in line and "test tasks of by_network" in line and "--allow-overlap" in line

    marked = _evaluate(within_task_checkpoint, "by_network", tmp_path / "r.json", "--allow-overlap")
    assert marked.exit_code == 0, marked.output
    assert "[CONTAMINATED: trained on" in marked.output
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["contaminated"] is True and result["notes"]["overlap"]["shared_tasks"] > 0
    assert "record_ids" not in result["notes"]["training"]  # result files stay small
    assert "⚠ contaminated" in report([str(tmp_path / "r.json")])


def test_a_clean_checkpoint_is_scored_and_marked_clean(within_task_checkpoint, tmp_path):
    ok = _evaluate(within_task_checkpoint, "within_task", tmp_path / "w.json")
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "w.json").read_text())["contaminated"] is False
    by_network = _train(tmp_path, "by_network", "by_network")
    assert _evaluate(by_network, "by_network", tmp_path / "n.json").exit_code == 0
    assert json.loads((tmp_path / "n.json").read_text())["contaminated"] is False


def test_records_trained_on_are_refused_on_within_task(tmp_path):
    everything = _train(tmp_path, "all", "all")  # a release evaluated as a whole: includes the test side
    refused = _evaluate(everything, "within_task", tmp_path / "r.json")
    assert refused.exit_code == 1 and "test records" in refused.output and not (tmp_path / "r.json").exists()


def test_a_fine_tuned_checkpoint_carries_its_first_training(within_task_checkpoint, tmp_path):
    tuned = _train(tmp_path, "tuned", "by_network", "--init", within_task_checkpoint)
    refused = _evaluate(tuned, "by_network", tmp_path / "r.json")
    assert refused.exit_code == 1 and "test tasks of by_network" in refused.output


def test_a_checkpoint_that_cannot_be_checked_is_scored_with_a_warning(within_task_checkpoint, tmp_path):
    old = tmp_path / "old"
    os.makedirs(old)
    for name in os.listdir(within_task_checkpoint):
        with open(os.path.join(within_task_checkpoint, name), "rb") as src, open(old / name, "wb") as dst:
            dst.write(src.read())
    training = json.loads((old / "training.json").read_text())
    del training["workload_ids"], training["record_ids"]
    (old / "training.json").write_text(json.dumps(training))
    result = _evaluate(str(old), "by_network", tmp_path / "r.json")
    assert result.exit_code == 0 and "cannot check" in result.output
    assert json.loads((tmp_path / "r.json").read_text())["contaminated"] is None


def test_overlap_levels():
    training = {"workload_ids": ["a", "b"], "record_ids": ["a1", "b1"], "init_training": None}
    assert overlap(training, "by_network", ["b", "c"], ["b2", "c1"]).contaminated is True
    assert overlap(training, "within_task", ["b", "c"], ["b2", "c1"]).contaminated is False
    assert overlap(training, "within_task", ["b"], ["b1", "b2"]).describe() == "trained on 1 of the 2 test records"
    assert overlap(None, "by_network", ["a"], ["a1"], trained=False).contaminated is False
    assert overlap(None, "by_network", ["a"], ["a1"]).contaminated is None  # a checkpoint without training.json
    nested = {"workload_ids": ["x"], "record_ids": ["x1"], "init_training": training}
    assert overlap(nested, "by_operator", ["a"], ["a9"]).contaminated is True


def test_fine_tuned_from_a_checkpoint_without_training_json_is_unchecked(within_task_checkpoint, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(within_task_checkpoint, bare)
    os.remove(bare / "training.json")  # e.g. saved with model.save() from Python
    tuned = _train(tmp_path, "tuned", "by_network", "--init", str(bare))
    result = _evaluate(tuned, "by_network", tmp_path / "r.json")
    assert result.exit_code == 0 and "cannot check" in result.output
    assert json.loads((tmp_path / "r.json").read_text())["contaminated"] is None


def test_training_json_records_the_digest_as_hex(within_task_checkpoint):
    digest = json.loads(open(os.path.join(within_task_checkpoint, "training.json")).read())["dataset_sha256"]
    assert isinstance(digest, str) and len(digest) == 64 and int(digest, 16) >= 0


def test_checkpoint_folders_get_the_usual_permissions(within_task_checkpoint):
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(within_task_checkpoint).st_mode & 0o777 == 0o777 & ~umask
