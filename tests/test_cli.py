"""The command line as a user meets it: help, suites, and clear errors on bad input."""

from __future__ import annotations

from click.testing import CliRunner

from cwm_bench.cli import main


def test_help_teaches_the_flow():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("collect", "validate", "import-metaschedule", "workloads"):
        assert command in result.output
    collect_help = CliRunner().invoke(main, ["collect", "--help"]).output
    assert "Resumable" in collect_help and "--per-task" in collect_help


def test_workloads_list_suites_and_mini():
    runner = CliRunner()
    suites = runner.invoke(main, ["workloads", "list"])
    assert suites.exit_code == 0 and "mini" in suites.output and "cpu-v0" in suites.output
    mini = runner.invoke(main, ["workloads", "list", "--suite", "mini"])
    assert mini.exit_code == 0 and "4 workloads" in mini.output and "matmul_64x64x64" in mini.output


def test_unknown_suite_or_filter_is_a_usage_error(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ["workloads", "list", "--suite", "nope"])
    assert bad.exit_code == 2 and "valid suites: mini" in bad.output
    bad_filter = runner.invoke(main, ["collect", "--workloads", "mini:nothing", "--out", str(tmp_path / "x")])
    assert bad_filter.exit_code == 2 and "no workload of suite 'mini' matches" in bad_filter.output
    assert not (tmp_path / "x").exists()  # nothing created on bad input


def test_validate_on_a_folder_that_is_not_a_dataset(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 1 and "manifest.json: missing" in result.output
