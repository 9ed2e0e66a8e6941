"""`publish`: a dry run touches no network; offline, a real upload fails clearly and never shows the token."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cwm_bench.cli import main
from cwm_bench.publish import PublishError, publish
from cwm_bench.release import build_release

FAKE_TOKEN = "hf_FakeTokenForTests0123456789abcdefXYZ"
EXPECTED = ["README.md", "checksums.sha256", "data/records/train-00000-of-00001.parquet",
            "data/workloads/train-00000-of-00001.parquet"]


pytestmark = pytest.mark.usefixtures("hub_offline")


@pytest.fixture(scope="module")
def release(tmp_path_factory, tiny_dataset) -> str:
    out = str(tmp_path_factory.mktemp("publish") / "tiny")
    build_release(tiny_dataset, out, "org/tiny")
    return out


def _cli(args: list[str], env: dict, cwd: str) -> subprocess.CompletedProcess:
    """The real command in a fresh process, so the hub library reads this environment."""
    return subprocess.run([sys.executable, "-m", "cwm_bench.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"), **extra)
    return env


def test_dry_run_lists_files_without_network(release, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("dry run opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert publish(release, "org/tiny", dry_run=True) == EXPECTED
    result = CliRunner().invoke(main, ["publish", release, "--repo-id", "org/tiny", "--dry-run"])
    assert result.exit_code == 0, result.output
    for f in EXPECTED:
        assert f in result.output
    assert "would upload 4 files" in result.output and "https://huggingface.co/datasets/org/tiny" in result.output


def test_folder_is_checked_before_upload(release, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(release, bad)
    shard = bad / EXPECTED[2]
    shard.write_bytes(shard.read_bytes()[:-1] + b"\0")
    with pytest.raises(PublishError, match="sha256 does not match"):
        publish(str(bad), "org/tiny", dry_run=True)
    (bad / "README.md").write_text("# no front matter\n")
    result = CliRunner().invoke(main, ["publish", str(bad), "--repo-id", "org/tiny", "--dry-run"])
    assert result.exit_code == 1 and "no `configs`" in result.output
    result = CliRunner().invoke(main, ["publish", release, "--repo-id", "not-a-repo-id", "--dry-run"])
    assert result.exit_code == 2 and "ORG/NAME" in result.output


def test_offline_upload_fails_clearly_and_hides_the_token(release, tmp_path):
    result = _cli(["publish", release, "--repo-id", "org/tiny"], _env(tmp_path, HF_TOKEN=FAKE_TOKEN), str(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in output and "Traceback" not in output
    assert FAKE_TOKEN not in output and FAKE_TOKEN[3:15] not in output


def test_missing_token_is_a_clear_error(release, tmp_path):
    result = _cli(["publish", release, "--repo-id", "org/tiny"], _env(tmp_path), str(tmp_path))
    assert result.returncode == 1 and "no Hugging Face token" in result.stderr
