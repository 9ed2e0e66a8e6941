"""A real submission for the leaderboard tests: the model of docs/adding-a-model.md, trained with
`cwm-bench train` on the H200 release's within_task train side, with the README's model_meta.yaml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.leaderboard.test_model_meta import readme_meta
from tests.model.test_plugins import doc_model_code

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RELEASE = os.path.join(ROOT, "datasets", "cwm-bench-h200-v0")


def cli(*args: str, cwd: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`cwm-bench ...` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "cwm_bench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def submission(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("leaderboard") / "action-ridge"
    folder.mkdir()
    (folder / "my_model.py").write_text(doc_model_code())
    (folder / "model_meta.yaml").write_text(yaml.safe_dump(readme_meta(), sort_keys=False))
    done = cli("train", "--include", "my_model.py", "--model", "action-ridge", "--data", RELEASE, "--split",
               "within_task", "--out", "checkpoint", "--no-progress", cwd=str(folder))
    assert done.returncode == 0, done.stderr
    return str(folder)


@pytest.fixture(scope="session")
def private_set(tmp_path_factory) -> str:
    """A dataset folder that is not published: the H200 release under another name, mode 0700."""
    folder = tmp_path_factory.mktemp("private") / "cwm-bench-heldout-test"
    shutil.copytree(RELEASE, folder)
    os.chmod(folder, 0o700)
    return str(folder)


@pytest.fixture(scope="session")
def scored(submission, private_set, tmp_path_factory) -> str:
    """A results folder holding the valid submission's result (public within_task + private)."""
    from cwm_bench.leaderboard.sandbox import filesystem_isolation_problem

    if filesystem_isolation_problem():
        pytest.skip(filesystem_isolation_problem())
    results = str(tmp_path_factory.mktemp("results") / "results")
    done = cli("submit", submission, "--data", RELEASE, "--split", "within_task", "--private", private_set,
               "--results", results, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return results
