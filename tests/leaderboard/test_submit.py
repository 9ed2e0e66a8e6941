"""`cwm-bench submit`: a valid submission of each kind is scored; every way a submission can go wrong
ends in one clear line and leaves the results folder byte-identical."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import yaml

from cwm_bench.leaderboard.sandbox import filesystem_isolation_problem
from tests.leaderboard.conftest import RELEASE, ROOT, cli

# code is refused where it cannot be kept from the harness's files (tested through the refusal itself)
pytestmark = pytest.mark.skipif(filesystem_isolation_problem() is not None,
                                reason="this machine cannot sandbox submitted code (no Landlock, not root)")


def snapshot(folder: str) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under `folder`."""
    found: dict[str, bytes | None] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), folder) + "/"] = None
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
    if "Landlock" in result["isolation"]["filesystem"]:
        assert "TCP blocked" in result["isolation"]["network"] or "ABI 1" in result["isolation"]["filesystem"]


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


def _score_body(body: str) -> str:
    """Code that replaces ActionRidge.score with `body` (ORIGINAL: the real one)."""
    return f"ORIGINAL = ActionRidge.score\n\n\ndef _score(self, records):\n    {body}\n\n\nActionRidge.score = _score\n"


# the child is started as: python -m cwm_bench.leaderboard.sandbox_child READ_FD WRITE_FD SPEC
FORGE_READY = ("import json, os, struct, sys\n_fd = int(sys.argv[2])\n"
               "_d = json.dumps({'ready': True, 'model': 'x', 'inputs': [[1]]}).encode()\n"
               "os.write(_fd, struct.pack('!I', len(_d)) + _d)\n")
# the child runs as __main__: its main loop reads requests through that module's `receive`
STOP_READING = "import sys, time\nsys.modules['__main__'].receive = lambda fd: time.sleep(3600)\n"

# (name, code appended to my_model.py, extra submit args, expected message)
BAD_CODE = [
    ("crash", _score_body("raise RuntimeError('boom')"), [], "failed while scoring: RuntimeError: boom"),
    ("hang", _score_body("import time; time.sleep(3600)"), ["--wall-s", "15"], "exceeded the wall-time limit (15 s)"),
    ("stops-reading", STOP_READING, ["--wall-s", "15"], "exceeded the wall-time limit (15 s)"),
    ("memory", _score_body("import numpy; numpy.ones(1 << 33)"), ["--memory-gb", "3"],
     "MemoryError: exceeded the memory limit"),
    ("cpu", _score_body("while True: pass"), ["--cpu-s", "3"], "the CPU-time limit"),
    ("wrong-count", _score_body("return ORIGINAL(self, records)[:-1]"), [], "returned 249 scores for 250 records"),
    ("nan", _score_body("s = ORIGINAL(self, records); s[0] = float('nan'); return s"), [], "non-finite score(s)"),
    ("forged-start-up", FORGE_READY, [], "malformed start-up answer"),
    ("reads-private-labels", _score_body("import pyarrow.parquet as pq; return -pq.read_table(PRIVATE)"
                                         ".column('latency_s').to_numpy()"), ["--private"], "PermissionError"),
    ("writes-results", _score_body("open(RESULTS + '/my-lab__action-ridge/1.0.json', 'w').write('{}')"), [],
     "PermissionError"),
]


@pytest.mark.parametrize("name, code, extra, expected", BAD_CODE, ids=[b[0] for b in BAD_CODE])
def test_a_misbehaving_submission_gets_one_clear_error_and_changes_nothing(name, code, extra, expected, submission,
                                                                           scored, private_set, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(submission, folder)
    results = str(tmp_path / "results")
    shutil.copytree(scored, results)
    with open(folder / "my_model.py", "a") as handle:
        handle.write(f"\n\nPRIVATE = {_private_parquet(private_set)!r}\nRESULTS = {results!r}\n\n\n{code}")
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


def test_links_and_special_files_in_a_submission_are_refused(submission, private_set, tmp_path):
    """A link to the private labels would otherwise be copied into the sandbox as a plain file."""
    folder = tmp_path / "linked"
    shutil.copytree(submission, folder)
    os.symlink(_private_parquet(private_set), folder / "checkpoint" / "extra.parquet")
    done = cli("submit", str(folder), "--data", RELEASE, "--split", "within_task", "--results",
               str(tmp_path / "results"), cwd=ROOT)
    assert done.returncode == 1 and "a symbolic link" in done.stderr, done.stderr
    os.remove(folder / "checkpoint" / "extra.parquet")
    os.mkfifo(folder / "pipe")
    done = cli("submit", str(folder), "--data", RELEASE, "--split", "within_task", "--results",
               str(tmp_path / "results"), cwd=ROOT)
    assert done.returncode == 1 and "not a plain file" in done.stderr, done.stderr
    assert not os.path.exists(tmp_path / "results")


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
    candidates, against TVM's XGBModel with the same seed."""
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
    labels = sorted(r.label for r in runs)
    assert labels[0] == "ansor" and labels[1].startswith("my-lab/action-ridge@1.0+") and len(labels) == 2
    assert all(r.trials == 4 and r.summary for r in runs)
    assert "H200" in live["trained_on"] and live["other_cpu"] is True  # trained on GPU rows, tuned on this CPU


def test_a_wheel_submission_scores_like_the_plain_file(submission, scored, tmp_path):
    """The same model shipped as a pure-Python wheel (imported from the archive, never installed)."""
    import zipfile

    folder = tmp_path / "wheel"
    shutil.copytree(submission, folder)
    os.makedirs(folder / "dist")
    wheel = folder / "dist" / "lb_ridge-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(folder / "my_model.py", "lb_ridge.py")
        archive.writestr("lb_ridge-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: lb-ridge\nVersion: 1.0\n")
        archive.writestr("lb_ridge-1.0.dist-info/WHEEL",
                         "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr("lb_ridge-1.0.dist-info/RECORD", "")
    os.remove(folder / "my_model.py")
    config = json.loads((folder / "checkpoint" / "config.json").read_text())
    config["class"] = "lb_ridge:ActionRidge"
    (folder / "checkpoint" / "config.json").write_text(json.dumps(config))
    meta = yaml.safe_load((folder / "model_meta.yaml").read_text())
    meta.update(name="my-lab/ridge-wheel", submission={"kind": "code", "include": "dist/lb_ridge-1.0-py3-none-any.whl",
                                                       "module": "lb_ridge", "checkpoint": "checkpoint"})
    (folder / "model_meta.yaml").write_text(yaml.safe_dump(meta))
    results = str(tmp_path / "results")
    done = cli("submit", str(folder), "--data", RELEASE, "--split", "within_task", "--results", results, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    with open(os.path.join(results, "my-lab__ridge-wheel", "1.0.json")) as handle:
        evaluation = json.load(handle)["evaluations"][0]
    assert evaluation["metrics"]["opa"] == result_of(scored)["evaluations"][0]["metrics"]["opa"]
