"""`cwm-bench submit`: a valid submission of each kind is scored; every way a submission can go wrong
ends in one clear line and leaves the results folder byte-identical."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import yaml

from cwm_bench.leaderboard.sandbox import isolation_available
from tests.leaderboard.conftest import RELEASE, ROOT, cli


def snapshot(folder: str) -> dict[str, bytes]:
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, folder)] = handle.read()
    return found


def result_of(results: str) -> dict:
    with open(os.path.join(results, "my-lab__action-ridge", "1.0.json")) as handle:
        return json.load(handle)


def test_a_code_submission_is_scored_public_and_private_with_provenance(scored, private_set):
    result = result_of(scored)
    public, private = result["evaluations"]
    assert (public["visibility"], public["dataset_id"], public["split"], public["side"]) == (
        "public", "cwm-bench-h200-v0", "within_task", "test")
    assert (private["visibility"], private["dataset_id"]) == ("private", os.path.basename(private_set))
    assert public["contaminated"] is False and public["contamination"] == []
    assert public["inputs"] == ["actions"] and public["model"] == "action-ridge"
    assert public["metrics"]["opa"]["mean"] > 0.55  # held-out programs of the tasks it trained on
    assert public["metrics"]["opa"]["ci_low"] <= public["metrics"]["opa"]["mean"] <= public["metrics"]["opa"]["ci_high"]
    assert private["metrics"]["opa"]["mean"] == pytest.approx(public["metrics"]["opa"]["mean"])  # the same records
    assert len(public["dataset_sha256"]) == 64 and len(result["submission_sha256"]) == 64
    assert result["meta"]["name"] == "my-lab/action-ridge" and result["versions"]["cwm-bench"]
    if isolation_available()["landlock_abi"]:
        assert result["isolation"]["filesystem"].startswith("Landlock")


def test_a_version_is_replaced_only_with_force(submission, scored, tmp_path):
    results = str(tmp_path / "results")
    shutil.copytree(scored, results)
    before = snapshot(results)
    again = cli("submit", submission, "--data", RELEASE, "--split", "within_task", "--results", results, cwd=ROOT)
    assert again.returncode == 1 and "was submitted before" in again.stderr and "--force" in again.stderr
    assert snapshot(results) == before
    forced = cli("submit", submission, "--data", RELEASE, "--split", "within_task", "--results", results, "--force",
                 cwd=ROOT)
    assert forced.returncode == 0, forced.stderr
    assert len(result_of(results)["evaluations"]) == 1  # replaced whole: the private evaluation is gone


def test_a_predictions_submission_scores_like_the_same_code(submission, scored, tmp_path):
    from cwm_bench.model import include, load_checkpoint, load_side

    include(os.path.join(submission, "my_model.py"))
    model = load_checkpoint(os.path.join(submission, "checkpoint"))
    side = load_side(RELEASE, "within_task", "test", model.inputs | {"record_id"})
    scores = model.score(side.records)
    folder = tmp_path / "predictions"
    folder.mkdir()
    meta = yaml.safe_load(open(os.path.join(submission, "model_meta.yaml")))
    meta.update(name="my-lab/action-ridge-predictions",
                submission={"kind": "predictions", "file": "predictions.csv", "dataset": "cwm-bench-h200-v0",
                            "split": "within_task"})
    (folder / "model_meta.yaml").write_text(yaml.safe_dump(meta))
    order = np.random.default_rng(0).permutation(len(scores))  # any row order
    (folder / "predictions.csv").write_text("record_id,score\n" + "".join(
        f"{side.record_ids[i]},{float(scores[i])!r}\n" for i in order))
    results = str(tmp_path / "results")
    done = cli("submit", str(folder), "--data", RELEASE, "--results", results, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    with open(os.path.join(results, "my-lab__action-ridge-predictions", "1.0.json")) as handle:
        predicted = json.load(handle)["evaluations"][0]
    assert predicted["metrics"]["opa"] == result_of(scored)["evaluations"][0]["metrics"]["opa"]
    # a predictions file that misses one record is refused
    lines = (folder / "predictions.csv").read_text().splitlines()
    (folder / "predictions.csv").write_text("\n".join(lines[:-1]) + "\n")
    meta["version"] = "1.1"
    (folder / "model_meta.yaml").write_text(yaml.safe_dump(meta))
    before = snapshot(results)
    short = cli("submit", str(folder), "--data", RELEASE, "--results", results, cwd=ROOT)
    assert short.returncode == 1 and "have no score" in short.stderr
    assert snapshot(results) == before


def _private_parquet(private_set: str) -> str:
    return os.path.join(private_set, "data", "records", "train-00000-of-00001.parquet")


# (name, code appended to my_model.py replacing ActionRidge.score, extra submit args, expected message)
BAD_CODE = [
    ("crash", "raise RuntimeError('boom')", [], "failed while scoring: RuntimeError: boom"),
    ("hang", "import time; time.sleep(3600)", ["--wall-s", "15"], "exceeded the wall-time limit (15 s)"),
    ("memory", "import numpy; numpy.ones(1 << 33)", ["--memory-gb", "3"], "MemoryError: exceeded the memory limit"),
    ("cpu", "while True: pass", ["--cpu-s", "3"], "the CPU-time limit"),
    ("wrong-count", "return ORIGINAL(self, records)[:-1]", [], "scores for"),
    ("nan", "s = ORIGINAL(self, records); s[0] = float('nan'); return s", [], "non-finite score(s)"),
    ("reads-private-labels", "import pyarrow.parquet as pq; return -pq.read_table(PRIVATE).column('latency_s')"
                             ".to_numpy()", ["--private"], "PermissionError"),
]


@pytest.mark.parametrize("name, body, extra, expected", BAD_CODE, ids=[b[0] for b in BAD_CODE])
def test_a_misbehaving_submission_gets_one_clear_error_and_changes_nothing(name, body, extra, expected, submission,
                                                                           scored, private_set, tmp_path):
    if name == "reads-private-labels" and not (isolation_available()["landlock_abi"] or isolation_available()["user"]):
        pytest.skip("this machine has neither Landlock nor a user switch: --private is refused here (tested below)")
    folder = tmp_path / "bad"
    shutil.copytree(submission, folder)
    with open(folder / "my_model.py", "a") as handle:
        handle.write(f"\n\nPRIVATE = {_private_parquet(private_set)!r}\nORIGINAL = ActionRidge.score\n\n\n"
                     f"def _score(self, records):\n    {body}\n\n\nActionRidge.score = _score\n")
    results = str(tmp_path / "results")
    shutil.copytree(scored, results)
    before = snapshot(results)
    args = [a if a != "--private" else f"--private={private_set}" for a in extra]
    meta = yaml.safe_load((folder / "model_meta.yaml").read_text())
    meta["version"] = "2.0"  # a new version: only the misbehaviour stops it
    (folder / "model_meta.yaml").write_text(yaml.safe_dump(meta))
    done = cli("submit", str(folder), "--data", RELEASE, "--split", "within_task", "--results", results, *args,
               cwd=ROOT)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and expected in last and "nothing was written" in last, done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(results) == before


def test_malformed_metadata_and_pickled_checkpoints_are_refused_before_anything_runs(submission, scored, tmp_path):
    results = str(tmp_path / "results")
    shutil.copytree(scored, results)
    before = snapshot(results)
    folder = tmp_path / "bad-meta"
    shutil.copytree(submission, folder)
    meta = yaml.safe_load((folder / "model_meta.yaml").read_text())
    meta["num_params"] = 16
    (folder / "model_meta.yaml").write_text(yaml.safe_dump(meta))
    done = cli("submit", str(folder), "--data", RELEASE, "--split", "within_task", "--results", results, cwd=ROOT)
    assert done.returncode == 1 and "unknown field 'num_params'" in done.stderr and "model_meta.yaml" in done.stderr
    pickled = tmp_path / "pickled"
    shutil.copytree(submission, pickled)
    (pickled / "checkpoint" / "weights.pkl").write_bytes(b"\x80\x04K\x01.")
    done = cli("submit", str(pickled), "--data", RELEASE, "--split", "within_task", "--results", results, cwd=ROOT)
    assert done.returncode == 1 and "looks like a pickle" in done.stderr
    assert snapshot(results) == before


def test_training_on_the_test_tasks_is_flagged_not_ranked(submission, scored, tmp_path):
    """The within_task checkpoint scored on by_network: its training.json holds records of every
    by_network test task, and its metadata says within_task."""
    results = str(tmp_path / "results")
    done = cli("submit", submission, "--data", RELEASE, "--split", "by_network", "--results", results, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "CONTAMINATED" in done.stdout
    evaluation = result_of(results)["evaluations"][0]
    assert evaluation["contaminated"] is True
    assert any("test tasks" in why for why in evaluation["contamination"])
    assert any("declares training on cwm-bench-h200-v0 within_task" in why for why in evaluation["contamination"])


def test_private_scoring_is_refused_where_the_sandbox_could_read_it(submission, tmp_path, monkeypatch):
    from cwm_bench.leaderboard import scoring

    inside = os.path.join(ROOT, "cwm_bench")  # the sandbox reads the installed package
    assert "which the sandbox must read" in scoring.private_isolation_problem(inside)
    monkeypatch.setattr(scoring, "isolation_available", lambda: {"landlock_abi": 0, "user": None,
                                                                 "network_namespace": False})
    assert "cannot keep submitted code from reading" in scoring.private_isolation_problem(str(tmp_path))


def test_the_live_score_tunes_held_out_tasks_against_ansor(submission, tmp_path):
    """4 real measurements on the cheapest held-out task, the sandboxed model scoring MetaSchedule's
    candidates, against TVM's XGBModel with the same seed; the ansor run is reused by the next one."""
    from cwm_bench.tuning.summary import load_runs

    results, live_out = str(tmp_path / "results"), str(tmp_path / "live")
    done = cli("submit", submission, "--data", RELEASE, "--split", "within_task", "--results", results,
               "--live-budget", "4", "--live-tasks", "1", "--live-out", live_out, "--no-progress", cwd=ROOT,
               timeout=600)
    assert done.returncode == 0, done.stderr
    live = result_of(results)["live"]
    assert live["budget"] == 4 and len(live["tasks"]) == 1 and live["seeds"] == [0] and live["pairs"] == 1
    assert live["speedup_geomean"] > 0 and live["ci_low"] <= live["speedup_geomean"] <= live["ci_high"]
    runs = load_runs([live_out])
    assert sorted(r.label for r in runs) == ["ansor", "my-lab/action-ridge@1.0"]
    assert all(r.trials == 4 and r.summary for r in runs)
    assert "H200" in live["trained_on"] and live["other_cpu"] is True  # trained on GPU rows, tuned on this CPU
