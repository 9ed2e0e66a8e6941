"""Named workload suites. A suite is a list of sources; equal tasks from two sources merge into one
workload (same structural hash) listing both networks."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cwm_bench.workload.operators import MINI_OPERATORS, OPERATORS, operator_workload
from cwm_bench.workload.workload import Workload

RELEASE_NETWORKS = ("resnet18", "resnet50", "mobilenet_v2", "bert_base_layer", "vit_b16_block")
GPU_NETWORKS = ("bert_base_layer", "resnet50")  # GPU device time is scarce: two networks, two families

SUITES: dict[str, str] = {
    "mini": "4 small operators (matmul, conv2d, depthwise conv2d, softmax); seconds to collect",
    "operators": f"{len(OPERATORS)} standalone operators at shapes from real networks",
    "networks": "every fused task of " + ", ".join(RELEASE_NETWORKS),
    "cpu-v0": "the release suite: `networks` + `operators`",
    "gpu-v0": "the GPU release suite: `mini` + every fused task of " + ", ".join(GPU_NETWORKS),
}


class UnknownSuiteError(ValueError):
    pass


def _network_sources(target_kind: str, names=RELEASE_NETWORKS) -> list[Callable[[], list[Workload]]]:
    from cwm_bench.workload.relax_import import network_workloads

    return [lambda name=name: network_workloads(name, target_kind) for name in names]


# Families held out by the `by_operator` split come first, so any prefix of a long collection
# already has test tasks for every split scheme.
_FIRST_FAMILIES = ("depthwise_conv2d", "conv2d_transpose")


def family_interleaved(specs) -> list:
    """Operators round-robin over families (held-out families first, then in order of appearance)."""
    families: dict[str, list] = {f: [] for f in _FIRST_FAMILIES}
    for spec in specs:
        families.setdefault(spec.family, []).append(spec)
    return round_robin([group for group in families.values() if group])


def _operator_sources(specs) -> list[Callable[[], list[Workload]]]:
    return [lambda specs=specs: [operator_workload(s) for s in family_interleaved(specs)]]


def suite_sources(name: str, target_kind: str = "llvm") -> list[Callable[[], list[Workload]]]:
    if name == "mini":
        return _operator_sources(MINI_OPERATORS)
    if name == "operators":
        return _operator_sources(OPERATORS)
    if name == "networks":
        return _network_sources(target_kind)
    if name == "cpu-v0":
        return _network_sources(target_kind) + _operator_sources(OPERATORS)
    if name == "gpu-v0":
        return _operator_sources(MINI_OPERATORS) + _network_sources(target_kind, GPU_NETWORKS)
    raise UnknownSuiteError(f"unknown suite {name!r}; valid suites: {', '.join(SUITES)}")


def merge_workloads(workloads: Iterable[Workload]) -> list[Workload]:
    """Merge equal tasks (same id) and keep first-seen order."""
    merged: dict[str, Workload] = {}
    for w in workloads:
        merged[w.workload_id] = merged[w.workload_id].merged_with(w) if w.workload_id in merged else w
    return list(merged.values())


def round_robin(lists: list[list[Workload]]) -> list[Workload]:
    """Interleave sources, so any prefix of a long collection covers every source."""
    out = []
    for i in range(max((len(x) for x in lists), default=0)):
        out.extend(x[i] for x in lists if i < len(x))
    return out


def load_suite(name: str, target_kind: str = "llvm") -> list[Workload]:
    """All workloads of a suite, sources interleaved, duplicates merged (first position kept)."""
    return merge_workloads(round_robin([source() for source in suite_sources(name, target_kind)]))


def select_workloads(spec: str, target_kind: str = "llvm") -> list[Workload]:
    """`spec` is a suite name, optionally filtered: `cpu-v0:conv2d` keeps one family,
    `mini:matmul_64x64x64,softmax_64x128` keeps named tasks."""
    suite, _, wanted = spec.partition(":")
    workloads = load_suite(suite, target_kind)
    if not wanted:
        return workloads
    keys = set(wanted.split(","))
    chosen = [w for w in workloads if w.family in keys or w.task_name in keys or w.workload_id in keys]
    if not chosen:
        raise UnknownSuiteError(f"no workload of suite {suite!r} matches {wanted!r}")
    return chosen
