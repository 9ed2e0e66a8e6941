"""The CostModel contract, for every registered model on a real collected dataset: fit, score one
finite number per record without seeing labels, and come back from its checkpoint scoring the same."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from cwm_bench.model import create_model, load_checkpoint, load_records, model_names

# Small settings: the contract, not the quality, is under test here.
FAST = {
    "ansor-xgb": {"num_boost_round": 40, "early_stopping_rounds": 10, "nthread": 1},
    "ansor-xgb-rank": {"num_boost_round": 40, "early_stopping_rounds": 10, "nthread": 1},
    "tenset-mlp": {"hidden": 32, "epochs": 3, "lr": 3e-3},
    "tlp": {"d_model": 32, "ff": 64, "epochs": 3, "lr": 3e-3},
    "world-model": {"d_model": 16, "epochs": 2, "max_steps": 64},
}
WEIGHT_FILES = {"ansor-xgb": ["model.json"], "ansor-xgb-rank": ["model.json"],
                "tenset-mlp": ["tenset_mlp.safetensors"], "tlp": ["tlp.safetensors", "tlp_vocab.json"],
                "world-model": ["world_model.safetensors", "world_model_vocab.json"]}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)  # several threads on a busy 2-core machine are far slower, not faster


@pytest.mark.parametrize("name", model_names())
def test_fit_score_save_load(name, tiny_dataset, tmp_path):
    records = load_records(tiny_dataset)
    model = create_model(name, **FAST.get(name, {}))
    model.fit(records, progress=False)
    score = model.score(records.without_labels())
    assert score.shape == (len(records),) and np.isfinite(score).all()
    model.save(str(tmp_path / "ckpt"))
    assert sorted(os.listdir(tmp_path / "ckpt")) == sorted(["config.json", *WEIGHT_FILES.get(name, [])])
    loaded = load_checkpoint(str(tmp_path / "ckpt"))
    assert type(loaded) is type(model) and loaded.config == model.config
    np.testing.assert_array_equal(loaded.score(records), score)


@pytest.mark.parametrize("name", ["tenset-mlp", "tlp", "world-model"])
def test_seeded_fits_are_identical(name, tiny_dataset):
    records = load_records(tiny_dataset)
    first, second, other = (create_model(name, seed=s, **FAST[name]) for s in (1, 1, 2))
    for model in (first, second, other):
        model.fit(records, progress=False)
    np.testing.assert_array_equal(first.score(records), second.score(records))
    assert not np.array_equal(first.score(records), other.score(records))
