"""The page and tables from result files with undefined values (NaN written as null)."""

from __future__ import annotations

from cwm_bench.leaderboard.render import build_boards, markdown, page


def _result(name: str, opa, live=None, sha="a" * 64) -> dict:
    metrics = {m: {"mean": opa, "ci_low": None if opa is None else opa - 0.01, "ci_high": None if opa is None else
                   opa + 0.01, "weighted_mean": opa} for m in ("opa", "kendall_tau", "top1", "slowdown@1", "ndcg@10")}
    return {"meta": {"name": name, "version": "1", "code_url": "https://x", "num_parameters": 3,
                     "submission": {"kind": "code"}},
            "evaluations": [{"dataset_id": "d", "dataset_sha256": sha, "visibility": "public", "split": "by_network",
                             "metrics": metrics, "contaminated": False, "num_tasks": 2, "num_programs": 9,
                             "noise": {"two_run_agreement": None, "oracle_opa": 0.9}, "checked_by": "metadata"}],
            "live": live, "submitted_at": "t"}


def test_undefined_values_render_as_dashes():
    live = {"speedup_geomean": None, "ci_low": None, "ci_high": None, "wins": None, "pairs": 0, "budget": 64,
            "tasks": ["t"], "seeds": [0], "tuned_on": "cpu", "trained_on": "cpu"}
    boards, rows = build_boards([_result("o/a", 0.7, live), _result("o/b", None)])
    text = markdown(boards, rows)
    assert "| 1 | o/a |" in text and "| 2 | o/b | 1 | – |" in text and "– [–, –]" in text
    html = page(boards, rows, "now")
    assert "two-run agreement –" in html and "declared clean" in html


def test_other_data_under_one_name_gets_its_own_board():
    boards, _ = build_boards([_result("o/a", 0.7), _result("o/b", 0.6, sha="b" * 64)])
    assert len(boards) == 2 and all("data " in b.title for b in boards)
