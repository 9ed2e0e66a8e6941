"""The README stays true to the repository: files it names exist, and no line is a stray fragment."""

from __future__ import annotations

import os
import re

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md")) as handle:
        return handle.read()


def test_no_stray_fragment_lines():
    # a line holding just "X" once cut a sentence in the benchmark section in two
    stray = [(i + 1, line) for i, line in enumerate(_readme().splitlines()) if re.fullmatch(r"\s*\w\s*", line)]
    assert stray == []


def test_scripts_and_docs_it_names_exist():
    named = set(re.findall(r"\b((?:benchmarks|docs|tools)/[\w./-]+\.(?:py|md|sh|txt))", _readme()))
    assert named, "the README names no scripts"
    missing = sorted(p for p in named if not os.path.exists(os.path.join(ROOT, p)))
    assert missing == []
