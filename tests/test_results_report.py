"""`cwm-bench report`: Markdown table of result files, PNG chart, one-line errors for bad files."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cwm_bench.cli import main
from cwm_bench.metrics import TASK_METRICS
from cwm_bench.results_report import ResultsReportError, report


def _metric(mean: float, half: float) -> dict:
    return {"mean": mean, "weighted_mean": mean, "ci_low": mean - half, "ci_high": mean + half}


def _write(tmp_path, name: str, model: str, split: str, opa: float, dataset: str = "cpu-v0",
           contaminated: bool | None = False) -> str:
    """A hand-written result file in `cwm_bench.results`' schema."""
    metrics = {m: _metric(0.5, 0.1) for m in TASK_METRICS}
    metrics.update(opa=_metric(opa, 0.05), kendall_tau=_metric(2 * opa - 1, 0.1), top1=_metric(0.9, 0.02),
                   top5=_metric(0.97, 0.01))
    metrics["slowdown@1"] = {"mean": None, "weighted_mean": None, "ci_low": None, "ci_high": None}  # undefined
    result = {"model": model, "model_config": {}, "checkpoint": None, "dataset_id": dataset,
              "dataset_sha256": "0" * 64, "dataset_files": 3, "split": split, "split_side": "test",
              "num_tasks": 7, "num_programs": 70, "metrics": metrics, "per_task": {}, "versions": {},
              "git_commit": None, "created_at": "2026-01-01T00:00:00+00:00", "schema_version": "1", "notes": {},
              "contaminated": contaminated}
    path = tmp_path / name
    path.write_text(json.dumps(result))
    return str(path)


@pytest.fixture
def two_results(tmp_path) -> list[str]:
    return [_write(tmp_path, "mlp.json", "tenset-mlp", "by_network", 0.81),
            _write(tmp_path, "tlp.json", "tlp", "within_task", 0.77)]


def test_table_has_a_row_per_result_and_png_is_valid(two_results, tmp_path):
    png = tmp_path / "charts" / "opa.png"
    table = report(two_results, str(png))
    lines = table.splitlines()
    assert lines[0].startswith("| model | split | OPA | Kendall τ | top-1 | top-5 | slowdown@1 | NDCG@10 |")
    assert len(lines) == 4
    assert any("| tenset-mlp | by_network | 0.810 ± 0.050 | 0.620 ± 0.100 | 0.900 ± 0.020 | 0.970 ± 0.010 | – | "
               "0.500 ± 0.100 |" in line for line in lines)
    assert any(line.startswith("| tlp | within_task | 0.770 ± 0.050 |") for line in lines)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_dataset_column_appears_only_when_results_span_datasets(two_results, tmp_path):
    other = _write(tmp_path, "gpu.json", "tlp", "within_task", 0.7, dataset="gpu-v0")
    assert "| dataset |" not in report(two_results)
    assert "| tlp | within_task | gpu-v0 | 0.700 ± 0.050 |" in report([*two_results, other])


def test_cli_prints_table_and_writes_chart_of_chosen_metric(two_results, tmp_path):
    png = tmp_path / "tau.png"
    result = CliRunner().invoke(main, ["report", *two_results, "--png", str(png), "--metric", "kendall_tau"])
    assert result.exit_code == 0, result.output
    assert "| tlp | within_task |" in result.output and png.read_bytes()[:4] == b"\x89PNG"


def test_malformed_file_gives_one_line_naming_it(two_results, tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"model": "x", "split": ')
    result = CliRunner().invoke(main, ["report", two_results[0], str(bad)])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and str(bad) in result.output
    no_metrics = tmp_path / "no_metrics.json"
    no_metrics.write_text(json.dumps({"model": "x", "split": "test"}))
    with pytest.raises(ResultsReportError, match=r"no_metrics\.json: not a cwm-bench result file: missing field"):
        report([str(no_metrics)])
    with pytest.raises(ResultsReportError, match="metric 'nope'"):
        report(two_results, str(tmp_path / "x.png"), metric="nope")


def test_contaminated_and_unchecked_rows_are_marked(tmp_path):
    clean = _write(tmp_path, "a.json", "ansor-xgb", "by_network", 0.75)
    dirty = _write(tmp_path, "b.json", "tlp", "by_network", 0.88, contaminated=True)
    unknown = _write(tmp_path, "c.json", "tenset-mlp", "by_network", 0.77, contaminated=None)
    old = tmp_path / "d.json"  # a result file written before the check existed
    old.write_text(json.dumps({k: v for k, v in json.loads(open(clean).read()).items() if k != "contaminated"}
                              | {"model": "random"}))
    table = report([clean, dirty, unknown, str(old)])
    assert "| ansor-xgb | by_network |" in table and "| tlp ⚠ contaminated | by_network |" in table
    assert "| tenset-mlp ⚠ unchecked |" in table and "| random ⚠ unchecked |" in table
    assert "⚠ contaminated: trained on the tasks or records" in table and "⚠ unchecked: what it trained on" in table
