"""Model options are typed and ranged from each model's declared defaults, checked before anything runs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cwm_bench.cli import main
from cwm_bench.model import create_model, model_names
from cwm_bench.model.registry import model_class

BAD = [
    ("ansor-xgb", {"valid_fraction": 1.5}, "'valid_fraction' must be in [0, 1), got 1.5"),
    ("ansor-xgb", {"eta": 0}, "'eta' must be in (0, 1]"),
    ("ansor-xgb", {"nthread": 0}, "'nthread' must be in [1, inf]"),
    ("ansor-xgb", {"nthread": "2"}, "'nthread' must be int or null, got '2'"),
    ("ansor-xgb-rank", {"num_boost_round": 2.5}, "'num_boost_round' must be int, got 2.5"),
    ("tenset-mlp", {"epochs": -1}, "'epochs' must be in [0, inf], got -1"),
    ("tenset-mlp", {"lr": 0}, "'lr' must be in (0, inf)"),
    ("tlp", {"dropout": 1.0}, "'dropout' must be in [0, 1)"),
    ("tlp", {"heads": True}, "'heads' must be int, got True"),
    ("random", {"bogus": 1}, "unknown random option(s) ['bogus']"),
    ("flops", {"seed": 1}, "unknown flops option(s) ['seed']"),
]


@pytest.mark.parametrize("name", model_names())
def test_every_built_in_model_declares_its_options(name):
    assert model_class(name).defaults is not None


@pytest.mark.parametrize(("name", "options", "message"), BAD)
def test_a_bad_option_is_refused_naming_it(name, options, message):
    with pytest.raises(ValueError) as info:
        create_model(name, **options)
    assert message in str(info.value)


def test_good_options_pass_and_ints_may_stand_for_floats():
    assert create_model("ansor-xgb", eta=1, nthread=None, valid_fraction=0).config["eta"] == 1
    assert create_model("random", seed=3).seed == 3


def test_the_cli_refuses_a_bad_option_in_one_line_and_writes_nothing(tiny_dataset, tmp_path):
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(main, ["train", "--model", "tenset-mlp", "--data", tiny_dataset, "--split", "all",
                                       "--config", json.dumps({"epochs": -1}), "--out", str(out)])
    assert result.exit_code == 2 and "'epochs' must be in [0, inf], got -1" in result.output
    assert not out.exists()


def test_zero_epochs_trains_nothing_so_training_from_scratch_refuses_it(tiny_dataset, tmp_path):
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(main, ["train", "--model", "tlp", "--data", tiny_dataset, "--split", "all",
                                       "--config", json.dumps({"epochs": 0}), "--out", str(out)])
    assert result.exit_code == 1 and "epochs must be >= 1 to train from scratch" in result.output
    assert not out.exists()
