"""What the sandbox decides from file modes, and refusing code where nothing can contain it."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from cwm_bench.leaderboard import sandbox


def test_a_folder_is_closed_to_others_only_without_their_execute_bit():
    base = tempfile.mkdtemp()  # the system's temp folder (pytest's own is closed to others)
    try:
        os.chmod(base, 0o755)
        outer = os.path.join(base, "outer")
        inner = os.path.join(outer, "data")
        os.makedirs(inner)
        os.chmod(outer, 0o711)  # not listable, but a guessed name opens: still open to "others"
        os.chmod(inner, 0o755)
        if not sandbox.traversable_by_others(base):
            pytest.skip(f"{tempfile.gettempdir()} is closed to others")
        assert sandbox.traversable_by_others(inner)
        os.chmod(outer, 0o710)
        assert not sandbox.traversable_by_others(inner)
    finally:
        os.chmod(os.path.join(base, "outer"), 0o755)
        shutil.rmtree(base)


def test_code_is_refused_where_nothing_keeps_it_from_the_harness(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "isolation_available", lambda: {"landlock_abi": 0, "user": None,
                                                                 "network_namespace": False})
    assert "refused" in sandbox.filesystem_isolation_problem()
    with pytest.raises(sandbox.SubmissionError, match="code submissions are refused"):
        sandbox.SandboxedModel(str(tmp_path), "m.py", "checkpoint")
