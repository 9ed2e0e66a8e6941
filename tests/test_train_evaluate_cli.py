"""`cwm-bench train` and `cwm-bench evaluate` end to end on a real (tiny) dataset."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cwm_bench.cli import main
from cwm_bench.metrics import TASK_METRICS
from cwm_bench.results import ResultSchemaError, validate_result


def test_train_then_evaluate_writes_a_valid_result(tiny_dataset, tmp_path):
    runner = CliRunner()
    ckpt, out = tmp_path / "ckpt", tmp_path / "result.json"
    config = json.dumps({"num_boost_round": 20, "early_stopping_rounds": 5, "nthread": 1})
    trained = runner.invoke(main, ["train", "--model", "ansor-xgb", "--data", tiny_dataset, "--split", "all",
                                   "--config", config, "--out", str(ckpt), "--no-progress"])
    assert trained.exit_code == 0, trained.output
    assert (ckpt / "model.json").exists() and (ckpt / "config.json").exists()

    evaluated = runner.invoke(main, ["evaluate", "--model", str(ckpt), "--data", tiny_dataset, "--split", "all",
                                     "--json", str(out), "--allow-overlap"])  # trained on these records
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads(out.read_text())
    validate_result(result)
    assert result["model"] == "ansor-xgb" and result["model_config"]["num_boost_round"] == 20
    assert result["dataset_id"] == "data" and result["split"] == "all" and result["num_tasks"] == 2
    assert set(result["metrics"]) == set(TASK_METRICS)
    assert set(result["versions"]) == {"cwm-bench", "tvm", "xgboost", "torch"}
    assert result["created_at"].endswith("+00:00")


def test_floors_evaluate_by_name_but_trainable_models_need_a_checkpoint(tiny_dataset, tmp_path):
    runner = CliRunner()
    out = tmp_path / "flops.json"
    ok = runner.invoke(main, ["evaluate", "--model", "flops", "--data", tiny_dataset, "--split", "all",
                              "--json", str(out)])
    assert ok.exit_code == 0, ok.output
    validate_result(json.loads(out.read_text()))
    untrained = runner.invoke(main, ["evaluate", "--model", "ansor-xgb", "--data", tiny_dataset, "--split", "all",
                                     "--json", str(tmp_path / "x.json")])
    assert untrained.exit_code == 2 and "must be trained first" in untrained.output


def test_unknown_model_exits_2_listing_valid_names(tiny_dataset, tmp_path):
    runner = CliRunner()
    for command in (["train", "--out", str(tmp_path / "c")], ["evaluate", "--json", str(tmp_path / "r.json")]):
        result = runner.invoke(main, [*command, "--model", "nope", "--data", tiny_dataset, "--split", "all"])
        assert result.exit_code == 2
        assert "unknown model 'nope'" in result.output and "ansor-xgb, ansor-xgb-rank, flops" in result.output


def test_a_split_scheme_on_a_collection_folder_is_a_clear_error(tiny_dataset, tmp_path):
    result = CliRunner().invoke(main, ["evaluate", "--model", "random", "--data", tiny_dataset,
                                       "--split", "by_network", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 1 and "no split column 'split_by_network'" in result.output


def test_validate_result_names_missing_or_mistyped_fields():
    good = {"model": "m", "model_config": {}, "checkpoint": None, "dataset_id": "d", "dataset_sha256": "0" * 64,
            "dataset_files": 1, "split": "all", "split_side": "all", "num_tasks": 1, "num_programs": 2,
            "metrics": {m: {"mean": 0.5, "weighted_mean": 0.5, "ci_low": None, "ci_high": 0.6}
                        for m in TASK_METRICS},
            "per_task": {"t": {"opa": 0.5}}, "versions": {}, "git_commit": None,
            "created_at": "2026-01-01T00:00:00+00:00", "schema_version": "1", "notes": {}}
    validate_result(good)
    with pytest.raises(ResultSchemaError, match="missing field 'model'"):
        validate_result({k: v for k, v in good.items() if k != "model"})
    with pytest.raises(ResultSchemaError, match="'num_tasks' must be int"):
        validate_result({**good, "num_tasks": "1"})
    with pytest.raises(ResultSchemaError, match=r"metrics\['opa'\] lacks 'weighted_mean'"):
        validate_result({**good, "metrics": {**good["metrics"], "opa": {"mean": 0.5}}})


def test_evaluate_reports_opa_as_a_share_of_the_estimated_oracle(tiny_dataset, tmp_path):
    import shutil

    import pyarrow.compute as pc

    from cwm_bench.noise import write_noise_table
    from cwm_bench.rows.reader import read_table

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    records = read_table(str(data), "records")
    # a re-measurement that reverses one task's order exactly: that task's agreement is 0, the other's 1
    first_task = records["workload_id"][0].as_py()
    flipped = pc.if_else(pc.equal(records["workload_id"], first_task), pc.divide(1.0, records["latency_s"]),
                         records["latency_s"])
    remeasured = records.set_column(records.schema.get_field_index("latency_s"), "latency_s", flipped)
    write_noise_table(str(data), records, remeasured)
    out = tmp_path / "random.json"
    result = CliRunner().invoke(main, ["evaluate", "--model", "random", "--data", str(data), "--split", "all",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    # agreement 0 -> oracle estimate 0.5, agreement 1 -> 1.0 (cwm_bench.noise.oracle_opa_estimate)
    assert saved["notes"]["two_run_agreement_opa"] == pytest.approx(0.5)
    assert saved["notes"]["oracle_opa_estimate"] == pytest.approx(0.75)
    assert saved["metrics"]["opa"]["fraction_of_oracle"] == pytest.approx(saved["metrics"]["opa"]["mean"] / 0.75)
    assert "of the estimated oracle" in result.output
