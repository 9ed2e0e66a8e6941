"""The first world model learns: fit on some H200 records, score the within_task test side it never saw."""

from __future__ import annotations

import os

import numpy as np
import torch

from cwm_bench.metrics.ranking import pairwise_accuracy
from cwm_bench.model import create_model, load_checkpoint, load_side

RELEASE = os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "cwm-bench-h200-v0")


def test_it_ranks_held_out_programs_better_than_chance(tmp_path):
    torch.set_num_threads(1)
    model = create_model("world-model", d_model=32, epochs=3, max_steps=128, consistency_per_task=4)
    model.fit(load_side(RELEASE, "within_task", "train", model.inputs).sample(600).labelled(), progress=False)
    test = load_side(RELEASE, "within_task", "test", model.inputs)
    scores = model.score(test.records)
    per_task = [pairwise_accuracy(test.latency_s[test.task_ids == t], scores[test.task_ids == t])
                for t in np.unique(test.task_ids)]
    assert np.nanmean(per_task) > 0.6  # random: 0.47 on this side
    model.save(str(tmp_path / "ckpt"))
    np.testing.assert_array_equal(load_checkpoint(str(tmp_path / "ckpt")).score(test.records), scores)


def test_the_committed_checkpoints_load_and_score_as_the_readme_says(tmp_path):
    """reference_model/checkpoints/ (README, "The reference world model"): evaluated through the CLI on
    the test sides they never trained on, they print the README's OPA."""
    import json

    from click.testing import CliRunner

    from cwm_bench.cli import main

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    for checkpoint, data, split, opa in (("cpu-v0-by_network-seed0", "cwm-bench-cpu-v0", "by_network", 0.7681),
                                         ("h200-v0-within_task-seed0", "cwm-bench-h200-v0", "within_task", 0.8496)):
        out = tmp_path / f"{checkpoint}.json"
        result = CliRunner().invoke(main, ["evaluate", "--model", os.path.join(root, "reference_model", "checkpoints",
                                                                                checkpoint),
                                           "--data", os.path.join(root, "datasets", data), "--split", split,
                                           "--json", str(out)])
        assert result.exit_code == 0, result.output
        saved = json.loads(out.read_text())
        assert saved["contaminated"] is False and saved["model"] == "world-model"
        assert abs(saved["metrics"]["opa"]["mean"] - opa) < 5e-4


def test_prefix_caching_scores_exactly_like_rolling_every_candidate():
    """Training is deterministic; candidates sharing prefixes (duplicates and evolutionary siblings of
    the release) score the same with and without prefix caching, and fewer states are rolled with it."""
    from cwm_bench.reference_model.encoding import Rolled, prefix_groups

    torch.set_num_threads(1)
    model = create_model("world-model", d_model=16, epochs=1, max_steps=128, consistency_per_task=2)
    train = load_side(RELEASE, "within_task", "train", model.inputs).sample(200).labelled()
    model.fit(train, progress=False)
    test = load_side(RELEASE, "within_task", "test", model.inputs).records
    again = create_model("world-model", d_model=16, epochs=1, max_steps=128, consistency_per_task=2)
    again.fit(train, progress=False)
    np.testing.assert_array_equal(again.score(test), model.score(test))  # seeded: training is deterministic
    records = test.take(np.concatenate([np.arange(len(test)), np.arange(0, len(test), 3)]))  # with duplicates
    cached = model.score(records)
    model.config["prefix_cache"] = False
    np.testing.assert_allclose(model.score(records), cached, rtol=1e-5, atol=1e-6)
    assert cached[len(test)] == cached[0]
    arrays = Rolled(records, model.kinds, 128).arrays(np.arange(len(records)))
    parents, _, _, _ = prefix_groups(arrays)
    assert parents and len(parents[0]) < len(records)
