"""Suites, filters and merging of equal tasks."""

from __future__ import annotations

import pytest

from cwm_bench.workload.suites import UnknownSuiteError, load_suite, merge_workloads, round_robin, select_workloads
from cwm_bench.workload.workload import NetworkUse


def test_mini_ids_are_stable_and_distinct():
    first = [w.workload_id for w in load_suite("mini")]
    assert len(first) == len(set(first)) == 4
    assert [w.workload_id for w in load_suite("mini")] == first


def test_filters_by_family_and_name():
    assert [w.family for w in select_workloads("mini:softmax")] == ["softmax"]
    assert len(select_workloads("mini:matmul_64x64x64,conv2d")) == 2
    with pytest.raises(UnknownSuiteError, match="valid suites"):
        select_workloads("nope")


def test_equal_tasks_merge_with_both_networks():
    a = select_workloads("mini:matmul_64x64x64")[0]
    from dataclasses import replace

    merged = merge_workloads([replace(a, networks=(NetworkUse("resnet18", 2),)),
                              replace(a, networks=(NetworkUse("resnet50", 3),)),
                              replace(a, networks=(NetworkUse("resnet18", 1),))])
    assert len(merged) == 1
    assert merged[0].networks == (NetworkUse("resnet18", 3), NetworkUse("resnet50", 3))


def test_round_robin_interleaves_sources():
    assert round_robin([[1, 2, 3], [10], [20, 21]]) == [1, 10, 20, 2, 21, 3]  # type: ignore[list-item]


def test_operators_interleave_families_held_out_ones_first():
    from cwm_bench.workload.operators import OPERATORS
    from cwm_bench.workload.suites import family_interleaved

    ordered = family_interleaved(OPERATORS)
    assert sorted(s.name for s in ordered) == sorted(s.name for s in OPERATORS)
    assert [s.family for s in ordered[:2]] == ["depthwise_conv2d", "conv2d_transpose"]
    first_round = [s.family for s in ordered[:len({s.family for s in OPERATORS})]]
    assert len(set(first_round)) == len(first_round)  # every family once before any repeats


def test_gpu_suite_is_mini_then_the_two_gpu_networks():
    from cwm_bench.workload.suites import GPU_NETWORKS, SUITES, suite_sources

    assert "gpu-v0" in SUITES and GPU_NETWORKS == ("bert_base_layer", "resnet50")
    sources = suite_sources("gpu-v0", "cuda")
    assert len(sources) == 1 + len(GPU_NETWORKS)
    assert [w.task_name for w in sources[0]()] == [w.task_name for w in load_suite("mini")]
