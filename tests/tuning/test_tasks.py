"""--workloads: dataset folders with a split's test tasks and id/name filters."""

from __future__ import annotations

import pytest

from cwm_bench.tuning.tasks import WorkloadSpecError, resolve_workloads

RELEASE = "datasets/cwm-bench-cpu-v0"


def test_a_splits_test_tasks_and_a_filter():
    held_out = resolve_workloads([f"{RELEASE}:by_network"])
    assert len(held_out) == 18
    assert all({u.network for u in w.networks} <= {"resnet50", "bert_base_layer"} for w in held_out)
    chosen = resolve_workloads([f"{RELEASE}:by_network:f9396aaf,layer_norm"])
    assert sorted(w.task_name for w in chosen) == ["layer_norm", "softmax"]
    assert chosen[0].mod is not None and chosen[0].args


def test_bad_specs_are_one_line_errors():
    with pytest.raises(WorkloadSpecError, match="unknown split"):
        resolve_workloads([f"{RELEASE}:by_nothing"])
    with pytest.raises(WorkloadSpecError, match="no task of"):
        resolve_workloads([f"{RELEASE}:by_network:zzzz"])
    with pytest.raises(WorkloadSpecError, match="not a folder"):
        resolve_workloads(["no-such-suite"])


def test_a_metaschedule_database_folder_gives_its_workloads(tmp_path, matmul):
    from tvm.s_tir import meta_schedule as ms

    database = ms.database.JSONDatabase(str(tmp_path / "database_workload.json"),
                                        str(tmp_path / "database_tuning_record.json"))
    database.commit_workload(matmul.mod)
    (task,) = resolve_workloads([str(tmp_path)])
    assert task.workload_id == matmul.workload_id and task.family == "matmul"
    with pytest.raises(WorkloadSpecError, match="has no splits"):
        resolve_workloads([f"{tmp_path}:by_network"])
