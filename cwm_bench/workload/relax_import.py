"""Network workloads: torch network → Relax → MetaSchedule's extracted tasks, cached on disk.

The passes are those of TVM's own `relax.pipeline.static_shape_tuning_pipeline` before it tunes, so
the tasks (fused operators and their weights) are exactly the ones MetaSchedule would tune.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cwm_bench.tvm_env import load_tensor_intrinsics
from cwm_bench.workload.networks import NETWORKS
from cwm_bench.workload.workload import NetworkUse, Workload

log = logging.getLogger(__name__)

# Extraction targets. The target does not change the task modules (checked: llvm with and without
# mcpu, other core counts and cuda give identical ids); `num-cores` is required by MetaSchedule.
_TARGETS = {
    "llvm": {"kind": "llvm", "num-cores": 2},
    "cuda": {"kind": "cuda", "arch": "sm_90"},
}
_CACHE_FORMAT = 1


@dataclass(frozen=True)
class ExtractedTask:
    """What we keep of a MetaSchedule `ExtractedTask` (and what the cache stores)."""

    task_name: str
    weight: int
    family: str
    mod: object  # tvm.IRModule with one PrimFunc


def network_names() -> list[str]:
    return list(NETWORKS)


def network_workloads(name: str, target_kind: str = "llvm") -> list[Workload]:
    """One workload per task MetaSchedule extracts from network `name`, in extraction order."""
    return [
        Workload.from_mod(task.mod, task.task_name, task.family, "network",
                          networks=(NetworkUse(name, task.weight),))
        for task in network_tasks(name, target_kind)
    ]


def network_tasks(name: str, target_kind: str = "llvm") -> list[ExtractedTask]:
    """The extracted tasks of `name`, from the disk cache when it is valid."""
    if name not in NETWORKS:
        raise KeyError(f"unknown network {name!r}; known: {network_names()}")
    path = cache_path(name, target_kind)
    tasks = _load_cache(path)
    if tasks is None:
        tasks = extract_tasks(name, target_kind)
        _save_cache(path, tasks)
    return tasks


# --- Extraction -----------------------------------------------------------------------------------


def extraction_target(target_kind: str):
    import tvm

    if target_kind not in _TARGETS:
        raise ValueError(f"unsupported target kind {target_kind!r}; known: {sorted(_TARGETS)}")
    return tvm.target.Target(_TARGETS[target_kind])


def relax_module(name: str, target_kind: str = "llvm"):
    """Import network `name` into Relax and fuse it the way TVM's tuning pipeline does."""
    import torch
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    spec = NETWORKS[name]
    with torch.no_grad():
        program = torch.export.export(spec.build(), spec.example_inputs())
    # Torch's own decompositions turn `linear` into view/addmm/view and `matmul` into expand/bmm; the
    # reshapes in between stop FuseOps from fusing the bias add into the matmul (BERT: 15 tasks with
    # a bare `matmul` + separate adds instead of 11 with `fused_matmul_add`). Relax's converters
    # keep the ops whole. Weights stay bound as constants so FoldConstant removes weight-only work.
    mod = from_exported_program(program, run_ep_decomposition=False)
    passes = tvm.transform.Sequential([
        relax.transform.DecomposeOpsForInference(),  # batch_norm → arithmetic on running stats
        relax.transform.CanonicalizeBindings(),
        relax.transform.LegalizeOps(),  # Relax ops → TIR PrimFuncs (TOPI computes)
        relax.transform.AnnotateTIROpPattern(),  # FuseOps needs each PrimFunc's op pattern
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),  # without these two, extract_tasks finds no tasks
    ])
    with extraction_target(target_kind):
        return passes(mod)


def extract_tasks(name: str, target_kind: str = "llvm") -> list[ExtractedTask]:
    """Run the import and MetaSchedule's task extraction (no cache)."""
    load_tensor_intrinsics(target_kind)  # before MetaSchedule imports all of them (~30 s)
    from tvm.s_tir import meta_schedule as ms

    mod = relax_module(name, target_kind)
    tasks = ms.relax_integration.extract_tasks(mod, extraction_target(target_kind))
    # `dispatched[0]` is the module MetaSchedule tunes (what tune_tasks hands to TuneContext).
    return [ExtractedTask(str(t.task_name), int(t.weight), classify_family(t.dispatched[0], str(t.task_name)),
                          t.dispatched[0]) for t in tasks]


# --- Operator families ----------------------------------------------------------------------------

_DATA_PAR, _COMM_REDUCE = 0, 2  # tirx.IterVar iter types
_NAME_FAMILIES = (("softmax", "softmax"), ("layer_norm", "layer_norm"), ("rms_norm", "layer_norm"),
                  ("pool", "pool"))


def classify_family(mod, task_name: str = "") -> str:
    """The operator family of a task, from its TIR blocks (TOPI's block names and buffer shapes)."""
    blocks = _blocks(mod)
    for block in blocks:  # the anchor op decides, whatever elementwise epilogue is fused to it
        name = block.name_hint.lower()  # TOPI mixes styles: "conv2d_nchw", "DepthwiseConv2d"
        if "conv" in name:
            return _conv_family(block)
        if ("matmul" in name or "dense" in name) and _reduces(block) and len(block.reads) >= 2:
            return _matmul_family(block)
    names = [block.name_hint.lower() for block in blocks] + [task_name.lower()]
    for keyword, family in _NAME_FAMILIES:
        if any(keyword in name for name in names):
            return family
    iter_types = {int(iv.iter_type) for block in blocks for iv in block.iter_vars}
    if not blocks or iter_types - {_DATA_PAR, _COMM_REDUCE}:
        return "other"  # opaque or ordered loops (scans, sorts, extern calls)
    return "reduction" if _COMM_REDUCE in iter_types else "elementwise"


def _blocks(mod) -> list:
    """All SBlocks of the task's PrimFunc, outer before inner, the root block excluded."""
    from tvm import s_tir

    sch = s_tir.Schedule(mod)
    pending, blocks = sch.get_child_blocks(sch.get_sblock("root")), []
    while pending:
        rv = pending.pop(0)
        blocks.append(sch.get(rv))
        pending.extend(sch.get_child_blocks(rv))
    return blocks


def _reduces(block) -> bool:
    return any(int(iv.iter_type) == _COMM_REDUCE for iv in block.iter_vars)


def _conv_family(block) -> str:
    """2-D conv, or depthwise when groups == input channels (one input channel per group)."""
    name = block.name_hint.lower()
    if "depthwise" in name:
        return "depthwise_conv2d"
    if "conv2d" not in name or "transpose" in name or len(block.reads) < 2:
        return "other"  # conv1d/3d/transposed: not a family of the benchmark
    data, weight = (region.source.shape for region in block.reads[:2])  # TOPI reads data * kernel
    if len(data) != 4 or len(weight) != 4:
        return "conv2d"
    # NCHW data with OIHW kernel (what torch gives), or NHWC with HWIO.
    channel_axis, kernel_in_axis = (3, 2) if name.endswith("nhwc") else (1, 1)
    channels, per_group = int(data[channel_axis]), int(weight[kernel_in_axis])
    return "depthwise_conv2d" if per_group == 1 and channels > 1 else "conv2d"


def _matmul_family(block) -> str:
    """batch_matmul when the right operand has its own batch (attention), else matmul (linear)."""
    rhs = [int(d) for d in block.reads[1].source.shape]
    if "batch" in block.name_hint.lower() or math.prod(rhs[:-2]) > 1:
        return "batch_matmul"
    return "matmul"


# --- Disk cache -----------------------------------------------------------------------------------


def cache_path(name: str, target_kind: str) -> Path:
    """`$CWM_BENCH_CACHE/tasks/…` (default `~/.cache/cwm-bench/tasks/…`), one file per TVM version."""
    import tvm

    root = Path(os.environ.get("CWM_BENCH_CACHE") or Path.home() / ".cache" / "cwm-bench")
    return root / "tasks" / f"{name}-{target_kind}-tvm{tvm.__version__}.json"


def _fingerprint() -> str:
    """Changes when the networks, this pipeline or torch change, so stale caches are rebuilt."""
    import torch

    digest = hashlib.sha256(torch.__version__.encode())
    for module in (Path(__file__), Path(__file__).with_name("networks.py")):
        digest.update(module.read_bytes())
    return digest.hexdigest()[:16]


def _save_cache(path: Path, tasks: list[ExtractedTask]) -> None:
    """Write atomically (temp file + rename), so readers never see half a file."""
    import tvm

    payload = {"format": _CACHE_FORMAT, "fingerprint": _fingerprint(), "tasks": [
        {"task_name": t.task_name, "weight": t.weight, "family": t.family, "mod": tvm.ir.save_json(t.mod)}
        for t in tasks]}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f)
        os.replace(tmp, path)
    except OSError as err:  # a read-only cache costs time, not correctness
        log.warning("could not write task cache %s: %s", path, err)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _load_cache(path: Path) -> list[ExtractedTask] | None:
    """The cached tasks, or None when the file is missing, stale or corrupt."""
    import tvm

    try:
        payload = json.loads(path.read_text())
        if payload["format"] != _CACHE_FORMAT or payload["fingerprint"] != _fingerprint():
            return None
        return [ExtractedTask(t["task_name"], int(t["weight"]), t["family"], tvm.ir.load_json(t["mod"]))
                for t in payload["tasks"]]
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001  (any corruption: rebuild rather than fail)
        log.warning("ignoring corrupt task cache %s: %s", path, err)
        return None
