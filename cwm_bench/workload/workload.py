"""The `Workload` seam: one tunable task (a TIR PrimFunc in an IRModule) plus where it comes from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cwm_bench.tvm_env import structural_hash_hex


@dataclass(frozen=True)
class ArgSpec:
    """One buffer argument of the task's `main`."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class NetworkUse:
    """A network that contains the task, and how many times (MetaSchedule's task weight)."""

    network: str
    weight: int


@dataclass
class Workload:
    """A tunable task. `workload_id` is the structural hash of `mod`, so equal tasks are one workload."""

    workload_id: str
    task_name: str
    family: str  # operator family, e.g. "conv2d", "depthwise_conv2d", "matmul", "softmax"
    source: str  # "operator" | "network"
    mod: Any  # tvm.IRModule with a single PrimFunc "main"
    networks: tuple[NetworkUse, ...] = ()
    flops: float = 0.0
    args: tuple[ArgSpec, ...] = field(default_factory=tuple)

    @classmethod
    def from_mod(cls, mod, task_name: str, family: str, source: str,
                 networks: tuple[NetworkUse, ...] = ()) -> Workload:
        """Build a workload from an IRModule, computing its id, FLOPs and argument specs."""
        mod = normalize_mod(mod)
        return cls(
            workload_id=structural_hash_hex(mod),
            task_name=task_name,
            family=family,
            source=source,
            mod=mod,
            networks=networks,
            flops=estimate_flops(mod),
            args=arg_specs(mod),
        )

    def merged_with(self, other: Workload) -> Workload:
        """The same task seen from another source: union of the networks (weights added)."""
        assert other.workload_id == self.workload_id
        weights: dict[str, int] = {}
        for use in self.networks + other.networks:
            weights[use.network] = weights.get(use.network, 0) + use.weight
        source = "network" if "network" in (self.source, other.source) else self.source
        return Workload(self.workload_id, self.task_name, self.family, source, self.mod,
                        tuple(NetworkUse(n, w) for n, w in sorted(weights.items())), self.flops, self.args)

    def networks_json(self) -> str:
        return json.dumps([[u.network, u.weight] for u in self.networks])


def normalize_mod(mod):
    """Accept a PrimFunc or an IRModule with one PrimFunc; return IRModule({"main": func})."""
    import tvm

    funcs = list(mod.functions.values()) if isinstance(mod, tvm.IRModule) else [mod]
    if len(funcs) != 1:
        raise ValueError(f"a task must hold exactly one PrimFunc, got {len(funcs)}")
    func = funcs[0]
    func = func.with_attr("global_symbol", "main")
    return tvm.IRModule({"main": func})


def estimate_flops(mod) -> float:
    from tvm.s_tir.analysis import estimate_tir_flops

    try:
        return float(estimate_tir_flops(mod))
    except Exception:  # noqa: BLE001  (data-dependent loops: FLOPs unknown, not fatal)
        return 0.0


def arg_specs(mod) -> tuple[ArgSpec, ...]:
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    func = mod["main"]
    infos = ArgInfo.from_prim_func(func)
    return tuple(
        ArgSpec(str(param.name), tuple(int(d) for d in info.shape), str(info.dtype))
        for param, info in zip(func.params, infos, strict=True)
    )
