"""The world-model consistency targets: features of the *real* intermediate programs.

At data-preparation time (inside `fit`), a seeded subsample of the training records is replayed in
TVM up to a few prefixes of their actions (a third, two thirds and all of the design-space part,
before MetaSchedule's post-processing), and MetaSchedule's per-store features of each intermediate
program are taken (mean and max over its stores). The world model learns to predict them from the
latent state it rolled to after the same prefix, so its latents track what the program has become.
Only training pays for this: scoring never builds, replays or featurizes a program, and the final
program's features are never read (the world model exists to avoid that cost).

The traces are rebuilt from the `actions` input group (`trace_json_of`: exact on both releases, see
tests/reference_model/test_consistency.py), so the model reads no input beyond the ones it declares.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import numpy as np

from cwm_bench.model import Records
from cwm_bench.reference_model.network import CONSISTENCY_DIM

_SSA = re.compile(r"^[blv]\d+$")
_LIST_DECISIONS = frozenset({"SamplePerfectTile", "SamplePartitionedTile"})


def _input(text: str):
    if _SSA.match(text) or text.startswith('"'):
        return text  # an SSA name or a string literal, stored as is
    try:
        return json.loads(text)  # a literal the action encoder stored as JSON
    except ValueError:
        return text


def trace_json_of(actions: list[dict], length: int | None = None) -> list:
    """The MetaSchedule trace JSON (`[instructions, decisions]`) of the first `length` actions."""
    insts, decisions = [], []
    for i, a in enumerate(actions[:length]):
        insts.append([a["kind"], [_input(x) for x in a["inputs"]], json.loads(a["attrs"]), list(a["outputs"])])
        if a["decision"] is not None:
            d = [int(v) for v in a["decision"]]
            decisions.append([i, d if a["kind"] in _LIST_DECISIONS else d[0]])
    return [insts, decisions]


def cut_points(actions: list[dict], cuts: int) -> list[int]:
    """Prefix lengths: `cuts` evenly spaced points of the actions before post-processing (the last: all)."""
    design = next((i for i, a in enumerate(actions) if a["kind"] == "EnterPostproc"), len(actions))
    return sorted({max(1, round(design * (k + 1) / cuts)) for k in range(cuts)}) if design else []


def summarize(features: np.ndarray) -> np.ndarray:
    """(stores, 164) per-store features -> mean and max over stores (zeros for a program with no store)."""
    if len(features) == 0:
        return np.zeros(CONSISTENCY_DIM, np.float32)
    return np.concatenate([features.mean(0), features.max(0)]).astype(np.float32)


def intermediate_targets(records: Records, rows: np.ndarray, cuts: int,
                         progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For `rows` of `records`: prefix lengths (R, cuts), targets (R, cuts, CONSISTENCY_DIM) and a
    validity mask (R, cuts). A prefix that fails to replay is masked out, not fatal."""
    import tvm
    from tvm.s_tir import Schedule, Trace
    from tvm.s_tir import meta_schedule as ms

    from cwm_bench.tvm_env import load_tensor_intrinsics

    mods = dict(zip(*(records.workloads.column(c).to_pylist() for c in ("workload_id", "mod_json")), strict=True))
    tasks, actions = records.task_ids(), records.actions()
    hw_kinds = (records.column("hw_kind").to_pylist() if "hw_kind" in records.table.column_names
                else ["cpu"] * len(records))
    probes = np.zeros((len(rows), cuts), np.int64)
    targets = np.zeros((len(rows), cuts, CONSISTENCY_DIM), np.float32)
    mask = np.zeros((len(rows), cuts), bool)
    contexts: dict[tuple[str, bool], object] = {}
    extractor = ms.feature_extractor.PerStoreFeature()
    for i, r in enumerate(rows):
        task, is_gpu = tasks[r], hw_kinds[r] == "gpu"
        if (task, is_gpu) not in contexts:
            load_tensor_intrinsics("cuda" if is_gpu else "llvm")
            # PerStoreFeature reads nothing of the target but whether it is a GPU
            target = tvm.target.Target({"kind": "cuda", "arch": "sm_90"} if is_gpu
                                       else {"kind": "llvm", "num-cores": 1})
            mod = tvm.ir.load_json(mods[task])
            contexts[task, is_gpu] = (mod, ms.TuneContext(mod=mod, target=target),
                                      ms.arg_info.ArgInfo.from_prim_func(mod["main"]))
        mod, context, args = contexts[task, is_gpu]
        for k, length in enumerate(cut_points(actions[r], cuts)[:cuts]):
            probes[i, k] = length
            try:
                sch = Schedule(mod, seed=1)
                Trace.apply_json_to_schedule(trace_json_of(actions[r], length), sch)
                (feats,) = extractor.extract_from(context, [ms.search_strategy.MeasureCandidate(sch, args)])
                targets[i, k], mask[i, k] = summarize(feats.numpy()), True
            except Exception:  # noqa: BLE001  (TVMError and friends: this prefix just gets no target)
                pass
        if progress:
            progress(1)
    return probes, targets, mask


def standardize(targets: np.ndarray, mask: np.ndarray,
                stats: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Targets as z-scores per feature (constant features -> 0; masked prefixes -> 0), with the
    (mean, std) used: computed over the valid prefixes unless `stats` is given."""
    if stats is None:
        kept = targets[mask] if mask.any() else np.zeros((1, targets.shape[-1]), np.float32)
        stats = (kept.mean(0), kept.std(0))
    mean, std = stats
    z = np.where(std > 1e-6, (targets - mean) / np.maximum(std, 1e-6), 0.0).astype(np.float32)
    z[~mask] = 0.0
    return z, stats
