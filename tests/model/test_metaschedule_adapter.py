"""A cwm-bench model inside MetaSchedule's real search, with our builder and runner."""

from __future__ import annotations

import numpy as np

from cwm_bench.measure.protocol import MeasureProtocol
from cwm_bench.model import create_model
from cwm_bench.model.metaschedule import InProcessBuilder, IsolatedRunner, as_metaschedule_cost_model

QUICK = MeasureProtocol(rounds=1, repeats_per_round=2, min_repeat_ms=2, check_fraction=0.0)


def test_tune_tir_with_an_adapted_model(target, tmp_path):
    from tvm import te
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.testing import te_workload

    cost_model = as_metaschedule_cost_model(create_model("ansor-xgb", num_boost_round=30, nthread=1))
    # A smaller population than MetaSchedule's 512 keeps the search itself to seconds on 2 cores.
    strategy = ms.search_strategy.EvolutionarySearch(population_size=64, init_min_unmeasured=50, genetic_num_iters=2)
    with InProcessBuilder() as builder, IsolatedRunner(protocol=QUICK) as runner:
        database = ms.tune_tir(te.create_prim_func(te_workload.matmul(64, 64, 64)), target, str(tmp_path),
                               max_trials_global=16, num_trials_per_iter=8, builder=builder, runner=runner,
                               database="memory", cost_model=cost_model, strategy=strategy, num_tuning_cores=2,
                               seed=1)
    run_secs = [[float(s) for s in r.run_secs] for r in database.get_all_tuning_records() if r.run_secs]
    valid = [s for s in run_secs if s and all(0 < x < 1 for x in s)]
    assert len(valid) >= 8
    assert cost_model.predict_calls > 0 and cost_model.update_calls == 2 and cost_model.fits >= 1


def test_predict_gives_positive_scores_in_the_models_order(generator):
    """MetaSchedule clamps scores at 0: negative scores (flops: -work) are shifted, order kept."""
    from tvm.s_tir import meta_schedule as ms

    candidates = generator.random(6)
    measure = [ms.search_strategy.MeasureCandidate(c.sch, generator.args_info) for c in candidates]
    cost_model = as_metaschedule_cost_model(create_model("flops"))
    scores = cost_model.predict(generator.ctx, measure)
    assert scores.dtype == np.float64 and (scores > 0).all()
    table = cost_model._table(generator.ctx, measure)  # what the model saw
    assert table.column("workload_id").to_pylist() == [generator.workload.workload_id] * 6
    raw = create_model("flops").score(_records(cost_model, table))
    assert np.array_equal(np.argsort(scores, kind="stable"), np.argsort(raw, kind="stable"))


def _records(cost_model, table):
    from cwm_bench.model import Records

    return Records(table, cost_model._workload_table())


def test_refit_every_zero_keeps_the_model_as_it_was_trained(generator):
    """`cwm-bench tune` runs checkpoints frozen: their updates are logged, never fitted on."""
    from tvm.s_tir import meta_schedule as ms

    candidates = [ms.search_strategy.MeasureCandidate(c.sch, generator.args_info) for c in generator.random(4)]
    results = [ms.runner.RunnerResult([1e-3 * (i + 1)], None) for i in range(4)]
    frozen = as_metaschedule_cost_model(create_model("ansor-xgb", num_boost_round=5, nthread=1), refit_every=0)
    frozen.update(generator.ctx, candidates, results)
    assert frozen.fits == 0 and frozen.update_calls == 1
    learning = as_metaschedule_cost_model(create_model("ansor-xgb", num_boost_round=5, nthread=1), refit_every=1)
    learning.update(generator.ctx, candidates, results)
    assert learning.fits == 1
