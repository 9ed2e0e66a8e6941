"""The action cache gives exactly the JSON round trip's actions, from the trace's Python text."""

from __future__ import annotations

import pytest

from cwm_bench.candidates.actions import ActionCache, actions_from_trace_json, trace_to_json


def slow(trace) -> list[dict]:
    return actions_from_trace_json(trace_to_json(trace))


def assert_same(fast: list[dict], expected: list[dict]) -> None:
    assert fast == expected
    for a, b in zip(fast, expected, strict=True):  # == holds for 1 == 1.0 == True: types too
        assert list(a) == list(b)
        assert all(type(a[k]) is type(b[k]) for k in a), (a, b)
        for k in ("inputs", "outputs", "decision"):
            assert all(type(x) is type(y) for x, y in zip(a[k] or [], b[k] or [], strict=True)), (a, b)


@pytest.fixture(scope="module", params=["matmul_64x64x64", "conv2d_14x32x32_k3"])
def traces(request, target):
    """Real traces of one mini task: random samples, then evolutionary ones after feedback."""
    from cwm_bench.candidates.generate import CandidateGenerator, SearchConfig
    from cwm_bench.workload.operators import MINI_OPERATORS, operator_workload

    spec = next(s for s in MINI_OPERATORS if s.name == request.param)
    gen = CandidateGenerator(operator_workload(spec), target, seed=0, config=SearchConfig(num_threads=1))
    random = gen.random(16)
    gen.observe(random, [1e-4 * (i + 1) for i in range(len(random))])
    evolved = gen.evolutionary(4)
    assert evolved
    return gen, [c.sch.trace for c in random + evolved]


def test_one_python_line_per_instruction(traces):
    for trace in traces[1]:
        assert len(trace.as_python()) == len(trace.insts)


def test_cached_actions_equal_the_json_round_trip_cold_and_warm(traces):
    cache = ActionCache()
    for trace in traces[1]:
        assert_same(cache.actions_of(trace), slow(trace))
    n = len(traces[1])
    assert cache.hits + cache.misses == n and cache.misses >= 1
    cold_misses = cache.misses
    for trace in traces[1]:
        assert_same(cache.actions_of(trace), slow(trace))
    assert cache.misses == cold_misses and cache.hits + cache.misses == 2 * n  # warm: all hits


def test_a_hit_with_another_decision_reads_that_decision(traces):
    trace = traces[1][0]
    cache = ActionCache()
    cache.actions_of(trace)
    changed = {}
    for index, inst in enumerate(trace.insts):
        decision = trace.decisions.get(inst)
        if inst.kind.name == "SamplePerfectTile" and "tile" not in changed and len(decision) > 1:
            changed["tile"] = index, [int(x) for x in reversed(list(decision))]
        elif inst.kind.name == "SampleCategorical" and "categorical" not in changed:
            changed["categorical"] = index, (int(decision) + 1) % len(inst.attrs[0])
    assert set(changed) == {"tile", "categorical"}
    new = trace
    for index, value in changed.values():
        new = new.with_decision(new.insts[index], value, remove_postproc=False)
    hits = cache.hits
    actions = cache.actions_of(new)
    assert cache.hits == hits + 1
    assert_same(actions, slow(new))
    for index, value in changed.values():
        assert actions[index]["decision"] == (value if isinstance(value, list) else [value])


def test_annotation_values_that_print_alike_stay_apart(matmul):
    """1, 1.0 and True all print as `ann_val=1`; their JSON differs (1, 1.0, true)."""
    from tvm.s_tir import Schedule

    def annotated(value):
        sch = Schedule(matmul.mod)
        sch.annotate(sch.get_sblock("root"), "k", value)
        return sch.trace

    cache = ActionCache()
    for value in (1, 1.0, True, 1, "1", [1, 2]):
        trace = annotated(value)
        assert_same(cache.actions_of(trace), slow(trace))
    assert cache.hits == 1  # only the second 1


def test_the_cache_is_bounded(traces):
    cache = ActionCache(max_lines=100)
    for trace in traces[1]:
        assert_same(cache.actions_of(trace), slow(trace))
        assert len(cache) <= 100 + len(trace.insts)


def test_the_adapter_builds_actions_through_its_cache(traces):
    """A model that reads actions but not trace JSON (tlp) gets them from the cache, the same."""
    from tvm.s_tir import meta_schedule as ms

    from cwm_bench.model import create_model
    from cwm_bench.model.metaschedule import as_metaschedule_cost_model

    gen, _ = traces
    candidates = [ms.search_strategy.MeasureCandidate(c.sch, gen.args_info) for c in gen.random(6)]
    expected = [slow(c.sch.trace) for c in candidates]
    cost_model = as_metaschedule_cost_model(create_model("tlp"))
    for _ in range(2):
        table = cost_model._table(gen.ctx, candidates)
        assert table.column("actions").to_pylist() == expected
    assert cost_model._actions.hits >= len(candidates)
