"""TLP: fits real action sequences, checkpoints with its vocabulary, masks padding, learns a planted signal."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from cwm_bench.baselines.tlp import Tokens, decision_bucket
from cwm_bench.metrics import Evaluator
from cwm_bench.model import Records, create_model

FAST = {"d_model": 32, "ff": 64, "epochs": 3, "lr": 3e-3}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def action(kind: str, inputs=(), attrs="[]", outputs=(), decision=None) -> dict:
    return {"kind": kind, "inputs": list(inputs), "attrs": attrs, "outputs": list(outputs), "decision": decision}


def program(tile: int, parallel: int, filler: int) -> list[dict]:
    return ([action("GetSBlock", attrs='["C","main"]', outputs=["b0"]),
             action("GetLoops", ["b0"], outputs=["l1", "l2"])]
            + [action("GetLoops", ["b0"], outputs=["l1", "l2"]) for _ in range(filler)]
            + [action("SamplePerfectTile", ["l1"], "[2,64]", ["v3", "v4"], [tile, 64 // tile]),
               action("Split", ["l1", "v3", "v4"], "[true,false]", ["l5", "l6"]),
               action("Annotate", ["b0", str(parallel)], '["meta_schedule.parallel"]')])


def synthetic(n_tasks: int = 3, per_task: int = 32, seed: int = 0) -> Records:
    """Latency is best at tile 8 and with parallel extent 32; sequence lengths vary (filler steps)."""
    rng = np.random.default_rng(seed)
    actions, latency, tasks = [], [], []
    for t in range(n_tasks):
        for _ in range(per_task):
            tile, parallel = 2 ** int(rng.integers(0, 7)), int(rng.choice([16, 32]))
            actions.append(program(tile, parallel, int(rng.integers(0, 6))))
            latency.append((1 + abs(np.log2(tile) - 3)) * (1.0 if parallel == 32 else 1.5) * (t + 1))
            tasks.append(f"task{t}")
    n = len(tasks)
    table = pa.table({"record_id": [str(i) for i in range(n)], "workload_id": tasks, "trace_json": ["[]"] * n,
                      "actions": actions, "features": [[] for _ in range(n)], "hw_kind": ["cpu"] * n,
                      "hw_name": ["x"] * n, "hw_arch": ["x"] * n, "hw_num_cores": [1] * n, "latency_s": latency})
    return Records(table, pa.table({"workload_id": sorted(set(tasks)), "flops": [1.0] * n_tasks}))


def test_tokens_truncate_pad_and_map_unknown_kinds():
    config = {**create_model("tlp").config, "max_len": 4}
    long, short = program(8, 32, 5), [action("NeverSeen", decision=[-1, 0, 1, 1000])]
    tokens = Tokens([long, short, []], {"GetSBlock": 2, "GetLoops": 3}, config)
    assert tokens.length.tolist() == [4, 1, 1]  # truncated; the empty sequence keeps one pad step
    assert tokens.kind[0].tolist() == [2, 3, 3, 3] and tokens.kind[1].tolist() == [1, 0, 0, 0]
    assert tokens.decision[1, 0, :4].tolist() == [1, 2, 3, decision_bucket(1000)] == [1, 2, 3, 12]
    *_, mask = tokens.batch(np.array([0, 1]), "cpu")
    assert mask.tolist() == [[False] * 4, [False, True, True, True]]


def test_padding_does_not_change_a_score():
    records = synthetic(1, 8)
    model = create_model("tlp", **FAST)
    model.fit(records, progress=False)
    alone = model.score(records.take([0]))
    with_longer = model.score(records.take([0, *range(1, 8)]))  # batched with longer and shorter sequences
    assert alone[0] == pytest.approx(with_longer[0], abs=1e-5)


def tile_and_parallel(actions: list[dict]) -> tuple[int, int]:
    tile = next(a["decision"][0] for a in actions if a["kind"] == "SamplePerfectTile")
    return tile, int(next(a["inputs"][1] for a in actions if a["kind"] == "Annotate"))


# (tile, parallel) pairs no fitted program has: only learning what each choice costs ranks them.
HELD_OUT = {(1, 32), (8, 16), (16, 32), (64, 16)}


def test_learns_a_planted_signal():
    """Fit on tasks 0-2 without the HELD_OUT combinations; rank those programs, and all of task 3.

    A model that memorized the fitted sequences has never seen a held-out one and ranks them at chance."""
    records = synthetic(n_tasks=4, per_task=48)
    tasks = records.task_ids()
    held = np.array([tile_and_parallel(a) in HELD_OUT for a in records.actions()])
    fit = records.take(np.flatnonzero((tasks != "task3") & ~held))
    new_programs = records.take(np.flatnonzero((tasks != "task3") & held))
    new_task = records.take(np.flatnonzero(tasks == "task3"))
    assert set(fit.task_ids()) == set(new_programs.task_ids()) == {"task0", "task1", "task2"}
    fitted = {json.dumps(a) for a in fit.actions()}
    assert not fitted & {json.dumps(a) for a in new_programs.actions()}
    model = create_model("tlp", d_model=32, ff=64, epochs=25, lr=5e-3, group_size=16, tasks_per_batch=2)
    model.fit(fit, progress=False)
    for held_out in (new_programs, new_task):
        opa = Evaluator(["opa"], n_bootstrap=10).eval({
            "task_id": held_out.task_ids(), "y_true_latency": held_out.latency(),
            "y_score": model.score(held_out.without_labels())})["opa"]["mean"]
        assert opa > 0.8
