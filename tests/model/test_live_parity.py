"""Offline and live, a model gets the same inputs for the same program; live, only the declared ones
are computed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from cwm_bench.model import ALL_INPUTS, create_model, load_side
from cwm_bench.model.metaschedule import as_metaschedule_cost_model


@pytest.fixture(scope="module")
def live_and_offline(tiny_dataset, target):
    """Every ok record of the tiny collection replayed into live MetaSchedule candidates of its task."""
    from tvm.s_tir import meta_schedule as ms

    from cwm_bench.candidates.generate import CandidateGenerator
    from cwm_bench.workload.operators import MINI_OPERATORS, operator_workload

    offline = load_side(tiny_dataset, "all", "all", ALL_INPUTS)
    table = offline.records.table
    tasks = {}
    for spec in MINI_OPERATORS:
        workload = operator_workload(spec)
        if workload.workload_id in set(table.column("workload_id").to_pylist()):
            tasks[workload.workload_id] = CandidateGenerator(workload, target, seed=1)
    assert len(tasks) == 2
    return offline, tasks, ms


def test_live_inputs_equal_offline_inputs_for_the_same_programs(live_and_offline):
    offline, tasks, ms = live_and_offline
    table = offline.records.table
    cost_model = as_metaschedule_cost_model(create_model("random"), inputs=ALL_INPUTS)
    compared = 0
    for workload_id, gen in tasks.items():
        rows = [i for i, w in enumerate(table.column("workload_id").to_pylist()) if w == workload_id]
        replayed = [gen.imported(table.column("trace_json")[i].as_py()) for i in rows]
        candidates = [ms.search_strategy.MeasureCandidate(c.sch, gen.args_info) for c in replayed]
        live = cost_model._table(gen.ctx, candidates)
        expected = table.take(pa.array(rows))
        assert live.schema.equals(expected.schema), (live.schema, expected.schema)
        for name in live.column_names:
            assert live.column(name).to_pylist() == expected.column(name).to_pylist(), name
        compared += len(rows)
    assert compared == len(offline) >= 8


def test_live_computes_only_the_declared_inputs(live_and_offline, monkeypatch):
    _, tasks, ms = live_and_offline
    gen = next(iter(tasks.values()))
    candidates = [ms.search_strategy.MeasureCandidate(c.sch, gen.args_info) for c in gen.random(4)]

    calls = []
    real = ms.feature_extractor.PerStoreFeature.extract_from

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ms.feature_extractor.PerStoreFeature, "extract_from", counted)
    tlp_inputs = as_metaschedule_cost_model(create_model("tlp"))._table(gen.ctx, candidates)
    assert tlp_inputs.column_names == ["workload_id", "actions"]  # tlp declares {"actions"}
    random_scores = as_metaschedule_cost_model(create_model("random")).predict(gen.ctx, candidates)
    assert len(random_scores) == 4 and np.isfinite(random_scores).all()
    assert calls == []
    as_metaschedule_cost_model(create_model("flops")).predict(gen.ctx, candidates)
    assert calls == [1]  # a model that reads features does pay for them


def test_live_labels_are_the_median_of_the_timings(live_and_offline):
    """As in datasets (latency_s = median of latencies_s), not the mean."""
    _, tasks, ms = live_and_offline
    gen = next(iter(tasks.values()))
    candidates = [ms.search_strategy.MeasureCandidate(c.sch, gen.args_info) for c in gen.random(2)]
    results = [ms.runner.RunnerResult([1.0, 1.0, 10.0], None), ms.runner.RunnerResult([2.0, 3.0, 4.0], None)]
    cost_model = as_metaschedule_cost_model(create_model("random"))
    cost_model.update(gen.ctx, candidates, results)
    assert cost_model.history[0].column("latency_s").to_pylist() == [1.0, 3.0]
