"""Continuing training from a checkpoint (`CostModel.fine_tune`, `train --init`) and seeded record samples
(`Records.sample`, `train --max-train-records`), on a real collected dataset."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
import xgboost as xgb
from click.testing import CliRunner

from cwm_bench.cli import main
from cwm_bench.model import CheckpointMismatchError, CostModel, Records, create_model, load_checkpoint, load_records
from tests.model.test_contract import FAST
from tests.model.test_tlp import action, synthetic

TORCH_MODELS = ("tenset-mlp", "tlp")
XGB_MODELS = ("ansor-xgb", "ansor-xgb-rank")


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def records(tiny_dataset):
    return load_records(tiny_dataset)


def _checkpoint(name: str, records, folder) -> str:
    model = create_model(name, **FAST[name])
    model.fit(records, progress=False)
    model.save(str(folder))
    return str(folder)


@pytest.mark.parametrize("name", XGB_MODELS)
def test_xgb_boosts_more_trees_on_the_loaded_booster(name, records, tmp_path):
    ckpt = _checkpoint(name, records, tmp_path / "ckpt")
    before = load_checkpoint(ckpt).booster
    model = load_checkpoint(ckpt, model=name, overrides={"num_boost_round": 5, "early_stopping_rounds": 5})
    model.fine_tune(records, progress=False)
    trees = before.num_boosted_rounds()
    assert trees < model.booster.num_boosted_rounds() <= trees + 5
    # the loaded trees are kept as they were: the first `trees` rounds predict what the checkpoint did
    x = xgb.DMatrix(np.random.default_rng(0).random((8, 164), dtype=np.float32))
    np.testing.assert_array_equal(model.booster[:trees].predict(x), before.predict(x))


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_torch_models_start_from_the_checkpoint_weights(name, records, tmp_path):
    ckpt = _checkpoint(name, records, tmp_path / "ckpt")
    saved = load_checkpoint(ckpt)
    untouched = load_checkpoint(ckpt, model=name)
    untouched.config["epochs"] = 0  # past the option check (>= 1): zero epochs must leave exactly the checkpoint
    untouched.fine_tune(records, progress=False)  # not a fresh init
    for key, value in saved.net.state_dict().items():
        torch.testing.assert_close(untouched.net.state_dict()[key], value, rtol=0, atol=0)
    tuned = load_checkpoint(ckpt, model=name, overrides={"epochs": 2, "lr": 1e-3})
    tuned.fine_tune(records, progress=False)
    assert tuned.config["epochs"] == 2 and tuned.config["lr"] == 1e-3
    assert not np.array_equal(tuned.score(records), saved.score(records))
    if name == "tenset-mlp":  # the inputs keep the checkpoint's normalization
        torch.testing.assert_close(tuned.scale, saved.scale, rtol=0, atol=0)
    tuned.save(str(tmp_path / "tuned"))
    np.testing.assert_array_equal(load_checkpoint(str(tmp_path / "tuned")).score(records), tuned.score(records))


def test_tlp_gives_unseen_action_kinds_their_own_embeddings(tmp_path):
    source = synthetic(2, 8)
    model = create_model("tlp", **{**FAST["tlp"], "epochs": 1})
    model.fit(source, progress=False)
    old_kinds, old_rows = dict(model.kinds), model.net.kind.weight.detach().clone()
    target = synthetic(2, 8, seed=1)  # as on a GPU: every program also binds a loop to threads
    actions = [[*a, action("Bind", ["l5"], '["threadIdx.x"]')] for a in target.actions()]
    target = Records(target.table.set_column(target.table.schema.get_field_index("actions"), "actions",
                                             pa.array(actions)), target.workloads)
    model.config["epochs"] = 0  # only the vocabulary changes
    model.fine_tune(target, progress=False)
    assert model.kinds == {**old_kinds, "Bind": len(old_kinds) + 2}
    torch.testing.assert_close(model.net.kind.weight[:len(old_rows)], old_rows, rtol=0, atol=0)
    model.save(str(tmp_path / "ckpt"))
    again = load_checkpoint(str(tmp_path / "ckpt"))
    assert again.kinds == model.kinds
    np.testing.assert_array_equal(again.score(target), model.score(target))


def test_checkpoint_of_another_model_or_a_fixed_option_is_refused(records, tmp_path):
    ckpt = _checkpoint("tenset-mlp", records, tmp_path / "ckpt")
    with pytest.raises(CheckpointMismatchError, match="is a 'tenset-mlp' checkpoint, not 'tlp'"):
        load_checkpoint(ckpt, model="tlp")
    with pytest.raises(CheckpointMismatchError, match=r"\['hidden'\] differ .*hidden=32.*only device, epochs"):
        load_checkpoint(ckpt, model="tenset-mlp", overrides={"hidden": 64, "epochs": 1})
    same = load_checkpoint(ckpt, model="tenset-mlp", overrides={"hidden": 32, "lr": 1e-4})  # equal values are fine
    assert same.config["lr"] == 1e-4


def test_floors_need_nothing_and_other_models_say_they_cannot_continue(records):
    create_model("flops").fine_tune(records, progress=False)

    class FitOnly(CostModel):
        name = "fit-only"

        def fit(self, train, progress=True):
            pass

        def score(self, records):
            return np.zeros(len(records))

    with pytest.raises(NotImplementedError, match="fit-only cannot continue training"):
        FitOnly().fine_tune(records)


def test_sample_is_seeded_order_free_and_nested(records):
    ids = lambda r: r.table.column("record_id").to_pylist()  # noqa: E731
    six = records.sample(6, seed=3)
    assert len(six) == 6 and ids(six) == ids(records.sample(6, seed=3))
    assert ids(six) != ids(records.sample(6, seed=4))
    shuffled = records.take(np.random.default_rng(0).permutation(len(records)))
    assert sorted(ids(shuffled.sample(6, seed=3))) == sorted(ids(six))  # a function of the ids, not the order
    assert set(ids(records.sample(3, seed=3))) <= set(ids(six))
    assert ids(six) == [i for i in ids(records) if i in set(ids(six))]  # kept in table order
    assert records.sample(10_000) is records


def _train(*args: str):
    return CliRunner().invoke(main, ["train", "--no-progress", *args])


def test_cli_fine_tunes_a_seeded_sample_and_labels_the_result(tiny_dataset, tmp_path):
    config = json.dumps({"num_boost_round": 20, "early_stopping_rounds": 5, "nthread": 1})
    base = tmp_path / "base"
    assert _train("--model", "ansor-xgb", "--data", tiny_dataset, "--split", "all", "--config", config,
                  "--out", str(base)).exit_code == 0
    tuned = {}
    for run, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        out = tmp_path / run
        result = _train("--model", "ansor-xgb", "--init", str(base), "--data", tiny_dataset, "--split", "all",
                        "--config", json.dumps({"num_boost_round": 5}), "--max-train-records", "8", "--seed", seed,
                        "--out", str(out))
        assert result.exit_code == 0, result.output
        assert "on 8 records (a seed-" + seed + " sample of 12)" in result.output
        tuned[run] = (out / "model.json").read_text()
    assert tuned["a"] == tuned["b"] != tuned["c"]  # the same seed picks the same records
    training = json.loads((tmp_path / "a" / "training.json").read_text())
    assert training["records"] == 8 and training["sample_seed"] == 7 and training["init"] == str(base)
    assert training["init_training"]["records"] == 12 and training["init_training"]["init"] is None
    assert load_checkpoint(str(tmp_path / "a")).config["num_boost_round"] == 5

    out = tmp_path / "tuned.json"
    evaluated = CliRunner().invoke(main, ["evaluate", "--model", str(tmp_path / "a"), "--data", tiny_dataset,
                                          "--split", "all", "--json", str(out), "--label", "ansor-xgb fine-tuned",
                                          "--allow-overlap"])  # it trained on these very records
    assert evaluated.exit_code == 0, evaluated.output
    saved = json.loads(out.read_text())
    assert saved["label"] == "ansor-xgb fine-tuned" and saved["notes"]["training"]["sample_seed"] == 7
    report = CliRunner().invoke(main, ["report", str(out)])
    assert saved["contaminated"] is True
    assert "| ansor-xgb fine-tuned ⚠ contaminated | all |" in report.output


def test_cli_refuses_mismatched_init_and_stray_seed(tiny_dataset, tmp_path):
    config = json.dumps({"num_boost_round": 5, "nthread": 1})
    base = tmp_path / "base"
    assert _train("--model", "ansor-xgb", "--data", tiny_dataset, "--split", "all", "--config", config,
                  "--out", str(base)).exit_code == 0
    common = ["--data", tiny_dataset, "--split", "all", "--out", str(tmp_path / "x")]
    other = _train("--model", "tlp", "--init", str(base), *common)
    assert other.exit_code == 2 and "is a 'ansor-xgb' checkpoint, but --model is 'tlp'" in other.output
    stray = _train("--model", "ansor-xgb", "--seed", "3", *common)
    assert stray.exit_code == 2 and "--max-train-records" in stray.output
    itself = _train("--model", "ansor-xgb", "--init", str(base), "--data", tiny_dataset, "--split", "all",
                    "--out", str(base))
    assert itself.exit_code == 2 and "must differ from --init" in itself.output
    floor = _train("--model", "random", "--data", tiny_dataset, "--split", "all", "--out", str(tmp_path / "r"))
    assert floor.exit_code == 0, floor.output
    conflict = _train("--model", "random", "--init", str(tmp_path / "r"), "--config", '{"seed": 5}', *common)
    assert conflict.exit_code == 2 and "['seed'] differ" in conflict.output
