"""The consistency targets: traces rebuilt from actions are exact, intermediate programs are real,
and a world model trained with the consistency loss predicts them for programs it never saw."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from cwm_bench.model import create_model, load_side
from cwm_bench.reference_model.consistency import cut_points, intermediate_targets, standardize, trace_json_of
from cwm_bench.reference_model.encoding import Rolled

DATASETS = os.path.join(os.path.dirname(__file__), "..", "..", "datasets")


@pytest.mark.parametrize("release", ["cwm-bench-cpu-v0", "cwm-bench-h200-v0"])
def test_traces_rebuilt_from_actions_equal_the_stored_traces(release):
    folder = os.path.join(DATASETS, release, "data", "records")
    rows = [r for f in sorted(os.listdir(folder))
            for r in pq.read_table(os.path.join(folder, f), columns=["trace_json", "actions"]).to_pylist()[::25]]
    assert len(rows) > 80
    for row in rows:
        assert trace_json_of(row["actions"]) == json.loads(row["trace_json"])


def test_cut_points_stay_in_the_design_space_part():
    actions = [{"kind": k} for k in ["GetSBlock", "GetLoops", "Split", "Reorder", "Parallel", "EnterPostproc", "Fuse"]]
    assert cut_points(actions, 3) == [2, 3, 5]
    assert cut_points([{"kind": "EnterPostproc"}], 3) == []


def test_intermediate_programs_differ_along_the_trace_and_a_trained_model_predicts_them():
    torch.set_num_threads(1)
    release = os.path.join(DATASETS, "cwm-bench-h200-v0")
    model = create_model("world-model", d_model=32, epochs=8, max_steps=128, consistency=1.0, consistency_per_task=8,
                         tasks_per_batch=1, group_size=32)
    train = load_side(release, "within_task", "train", model.inputs).sample(500).labelled()
    model.fit(train, progress=False)

    test = load_side(release, "within_task", "test", model.inputs).records
    rows = np.arange(0, len(test), max(1, len(test) // 24))[:24]
    probes, raw, mask = intermediate_targets(test, rows, 3)
    assert mask.mean() > 0.9 and (probes[:, 0] < probes[:, -1]).all()
    assert np.abs(raw[:, 0] - raw[:, -1]).max() > 0.1  # the first third and the whole design space differ
    z, _ = standardize(raw, mask, model.consistency_stats)
    rolled = Rolled(test.take(rows), model.kinds, 128)
    with torch.no_grad():
        _, states = model.net(**rolled.batch(np.arange(len(rows)), "cpu"), probes=torch.as_tensor(probes))
        error = ((model.net.decoder(states).numpy() - z) ** 2).mean(-1)[mask].mean()
    baseline = (z ** 2).mean(-1)[mask].mean()  # predicting the training mean
    assert error < 0.8 * baseline, (error, baseline)


def test_a_prefix_that_does_not_replay_is_masked_not_fatal():
    import pyarrow as pa

    from cwm_bench.model import Records

    records = load_side(os.path.join(DATASETS, "cwm-bench-h200-v0"), "within_task", "test",
                        {"actions", "hardware"}).records.take([0, 1])
    actions = records.table.column("actions").to_pylist()
    actions[0][0] = {**actions[0][0], "attrs": '["no_such_block","main"]'}  # GetSBlock of a block that is not there
    table = records.table.set_column(records.table.schema.get_field_index("actions"), "actions",
                                     pa.array(actions, records.table.schema.field("actions").type))
    probes, raw, mask = intermediate_targets(Records(table, records.workloads), np.arange(2), 3)
    assert not mask[0].any() and mask[1].all()  # the broken record gets no target, the other all of its own
    assert (raw[0] == 0).all() and probes[0, 0] > 0
