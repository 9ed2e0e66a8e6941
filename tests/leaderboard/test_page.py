"""`cwm-bench leaderboard render`: the static page in real headless Chromium: the rows, the ranks,
the contamination mark, sorting by a click, and nothing fetched from anywhere but the file itself."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import yaml

from tests.leaderboard.browser import Page, chromium
from tests.leaderboard.conftest import RELEASE, ROOT, cli

ROWS = ("[...document.querySelectorAll('table.board[data-board=\"public-cwm-bench-h200-v0-within-task\"] tbody tr')]"
        ".map(r => [...r.cells].map(c => c.textContent))")


@pytest.fixture(scope="module")
def board(submission, scored, tmp_path_factory) -> tuple[str, str]:
    """Three entries on the within_task board: the trained ridge (code), random scores (predictions)
    and a ridge whose metadata says it trained on the test side (contaminated)."""
    from cwm_bench.model import load_side

    work = tmp_path_factory.mktemp("board")
    results = str(work / "results")
    shutil.copytree(scored, results)
    base = yaml.safe_load(open(os.path.join(submission, "model_meta.yaml")))
    leaky = work / "leaky"
    shutil.copytree(submission, leaky)
    (leaky / "model_meta.yaml").write_text(yaml.safe_dump({
        **base, "name": "my-lab/leaky-ridge",
        "training_data": [{"dataset": "cwm-bench-h200-v0", "split": "within_task", "side": "test"}]}))
    random = work / "random"
    random.mkdir()
    side = load_side(RELEASE, "within_task", "test", {"record_id"})
    scores = np.random.default_rng(1).normal(size=len(side))
    (random / "predictions.csv").write_text("record_id,score\n" + "".join(
        f"{r},{float(s)!r}\n" for r, s in zip(side.record_ids, scores, strict=True)))
    (random / "model_meta.yaml").write_text(yaml.safe_dump({
        **base, "name": "my-lab/random-guess", "num_parameters": 0, "training_data": [],
        "submission": {"kind": "predictions", "file": "predictions.csv", "dataset": "cwm-bench-h200-v0",
                       "split": "within_task"}}))
    for folder in (leaky, random):
        done = cli("submit", str(folder), "--data", RELEASE, "--split", "within_task", "--results", results, cwd=ROOT)
        assert done.returncode == 0, done.stderr
    html, md = str(work / "site" / "index.html"), str(work / "LEADERBOARD.md")
    done = cli("leaderboard", "render", "--results", results, "--html", html, "--markdown", md, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return html, md


def test_the_markdown_ranks_clean_entries_and_marks_the_contaminated_one(board):
    text = open(board[1]).read()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "my-lab/" in line]
    within = [r for r in rows if "private" not in r][:3]
    assert within[0].startswith("| 1 | my-lab/action-ridge") and within[1].startswith("| 2 | my-lab/random-guess")
    assert within[2].startswith("| – | my-lab/leaky-ridge") and "⚠ contaminated" in within[2]
    assert "private test set" in text


@pytest.mark.skipif(chromium() is None and not os.environ.get("CI"),
                    reason="needs Debian's chromium (.ci/run installs it)")
def test_the_page_in_a_real_browser(board):
    html = board[0]
    with Page("file://" + os.path.abspath(html)) as page:
        rows = page.js(ROWS)
        names = [r[1] for r in rows]
        assert names == ["my-lab/action-ridge", "my-lab/random-guess", "my-lab/leaky-ridge"]
        assert [r[0] for r in rows] == ["1", "2", "–"] and "contaminated" in rows[2][-1]
        assert page.js("document.querySelectorAll('table.board').length") == 2  # public + private
        assert page.js("document.querySelectorAll('svg.plot').length") == 2
        values = ("[...document.querySelectorAll('table.board')[0].tBodies[0].rows].map("
                  "r => parseFloat(r.querySelector('td[data-metric=opa]').dataset.v))")
        opa = page.js(values)
        header = ("[...document.querySelectorAll('table.board')[0].tHead.rows[0].cells]"
                  ".findIndex(c => c.textContent.startsWith('opa'))")
        column = page.js(header)
        page.js(f"document.querySelectorAll('table.board')[0].tHead.rows[0].cells[{column}].click()")
        assert page.js(values) == sorted(opa, reverse=True)  # ↑ metric: best first
        page.js(f"document.querySelectorAll('table.board')[0].tHead.rows[0].cells[{column}].click()")
        assert page.js(values) == sorted(opa)
        assert page.js(ROWS)[0][1] == "my-lab/random-guess"
        page.js("document.querySelectorAll('table.board')[0].tHead.rows[0].cells[1].click()")  # by name
        assert [r[1] for r in page.js(ROWS)] in (sorted(names), sorted(names)[::-1])
        data = json.loads(page.js("document.getElementById('board-data').textContent"))
        assert data["entries"] == 4
    assert page.requests and all(url.startswith(("file://", "data:")) for url in page.requests), page.requests
