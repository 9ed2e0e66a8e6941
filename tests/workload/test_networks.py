"""The torch networks and their import into MetaSchedule tasks."""

from __future__ import annotations

import pytest
import torch

from cwm_bench.workload.networks import NETWORKS

OUTPUT_SHAPES = {
    "resnet18": (1, 1000),
    "resnet50": (1, 1000),
    "mobilenet_v2": (1, 1000),
    "bert_base_layer": (1, 128, 768),
    "vit_b16_block": (1, 197, 768),
}


def test_registry_lists_the_benchmark_networks():
    assert set(NETWORKS) == set(OUTPUT_SHAPES)
    assert all(name == spec.name for name, spec in NETWORKS.items())


@pytest.mark.parametrize("name", sorted(OUTPUT_SHAPES))
def test_forward_pass_gives_expected_shape(name):
    spec = NETWORKS[name]
    model = spec.build()
    assert not model.training
    with torch.no_grad():
        out = model(*spec.example_inputs())
    assert tuple(out.shape) == OUTPUT_SHAPES[name]
    assert torch.isfinite(out).all()


def test_builds_are_deterministic():
    spec = NETWORKS["bert_base_layer"]
    first, second = spec.build().state_dict(), spec.build().state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert torch.equal(spec.example_inputs()[0], spec.example_inputs()[0])


# --- Family classification on TOPI computes (fast: no network import) ----------------------------


def _prim_func(*tensors):
    import tvm
    from tvm import te

    return tvm.IRModule({"main": te.create_prim_func(list(tensors))})


def _conv(channels, groups, kernel_out):
    from tvm import te, topi

    data = te.placeholder((1, channels, 14, 14), name="data")
    weight = te.placeholder((kernel_out, channels // groups, 3, 3), name="weight")
    return _prim_func(data, weight, topi.nn.group_conv2d_nchw(data, weight, 1, 1, 1, groups))


def _family_cases():
    from tvm import te, topi

    a2, w2 = te.placeholder((64, 32), name="a"), te.placeholder((16, 32), name="w")
    a3, b3 = te.placeholder((4, 64, 32), name="a"), te.placeholder((4, 16, 32), name="b")
    x = te.placeholder((1, 8, 16, 16), name="x")
    dw = te.placeholder((8, 1, 3, 3), name="dw")
    return {
        "conv2d": _conv(8, 1, 16),
        "grouped conv2d": _conv(8, 2, 8),
        "single-channel conv2d": _conv(1, 1, 8),
        "depthwise_conv2d": _conv(8, 8, 8),
        "topi depthwise_conv2d": _prim_func(x, dw, topi.nn.depthwise_conv2d_nchw(x, dw, 1, 1, 1)),
        "matmul": _prim_func(a2, w2, topi.nn.dense(a2, w2)),
        "batch_matmul": _prim_func(a3, b3, topi.nn.batch_matmul(a3, b3)),
        "softmax": _prim_func(a2, topi.nn.softmax(a2)),
        "pool": _prim_func(x, topi.nn.pool2d(x, (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), "max")),
        "reduction": _prim_func(a2, topi.sum(a2, axis=1)),
        "elementwise": _prim_func(a2, topi.transpose(topi.exp(a2))),
    }


EXPECTED_FAMILY = {
    "conv2d": "conv2d", "grouped conv2d": "conv2d", "single-channel conv2d": "conv2d",
    "depthwise_conv2d": "depthwise_conv2d", "topi depthwise_conv2d": "depthwise_conv2d",
    "matmul": "matmul", "batch_matmul": "batch_matmul", "softmax": "softmax", "pool": "pool",
    "reduction": "reduction", "elementwise": "elementwise",
}


def test_classify_family_on_topi_computes():
    from cwm_bench.workload.relax_import import classify_family

    got = {case: classify_family(mod) for case, mod in _family_cases().items()}
    assert got == EXPECTED_FAMILY


# --- Network import -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_runs(tmp_path_factory):
    """Two calls into an empty cache: the first extracts, the second reads the cache."""
    from cwm_bench.workload import relax_import

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CWM_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        path = relax_import.cache_path("bert_base_layer", "llvm")
        first = relax_import.network_workloads("bert_base_layer")
        assert path.exists()
        second = relax_import.network_workloads("bert_base_layer")
        path.write_text(path.read_text()[:5000])  # truncated: must be ignored and rebuilt
        rebuilt = relax_import.network_workloads("bert_base_layer")
        yield first, second, rebuilt


def test_bert_layer_tasks(bert_runs):
    first, _, _ = bert_runs
    families = {w.family for w in first}
    assert {"matmul", "batch_matmul", "softmax", "layer_norm"} <= families
    assert all(w.source == "network" for w in first)
    assert all(len(w.networks) == 1 and w.networks[0].network == "bert_base_layer" for w in first)
    assert all(w.networks[0].weight >= 1 for w in first)
    ids = [w.workload_id for w in first]
    assert len(ids) == len(set(ids))
    # Q, K and V projections plus the attention output: one task, four uses.
    assert max(w.networks[0].weight for w in first if w.family == "matmul") >= 3


def test_cache_hit_gives_same_workloads(bert_runs):
    first, second, rebuilt = bert_runs
    for other in (second, rebuilt):
        assert [(w.workload_id, w.task_name, w.family, w.networks) for w in other] == \
            [(w.workload_id, w.task_name, w.family, w.networks) for w in first]


def test_network_names_match_registry():
    from cwm_bench.workload.relax_import import network_names

    assert network_names() == list(NETWORKS)


def test_unknown_network_or_target_raises():
    from cwm_bench.workload.relax_import import extraction_target, network_workloads

    with pytest.raises(KeyError):
        network_workloads("alexnet")
    with pytest.raises(ValueError):
        extraction_target("vulkan")


@pytest.mark.slow
@pytest.mark.parametrize("name,families,layers", [
    # weights add up to the layer count: convs + max/avg pool + flatten + fc
    ("resnet50", {"conv2d", "pool", "matmul"}, 53 + 4),
    ("mobilenet_v2", {"conv2d", "depthwise_conv2d", "pool", "matmul"}, 52 + 3),
])
def test_convnet_tasks(name, families, layers, tmp_path, monkeypatch):
    from cwm_bench.workload.relax_import import network_workloads

    monkeypatch.setenv("CWM_BENCH_CACHE", str(tmp_path))
    workloads = network_workloads(name)
    assert families <= {w.family for w in workloads}
    assert sum(w.networks[0].weight for w in workloads) == layers
    ids = [w.workload_id for w in workloads]
    assert len(ids) == len(set(ids))
    assert [w.workload_id for w in network_workloads(name)] == ids
