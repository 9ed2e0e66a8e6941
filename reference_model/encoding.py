"""The world model's inputs as arrays: block slots of the initial program, one row of numbers per
action (`trace_state.Step`), hardware features from the descriptor, and the prefix groups that let
candidates sharing a prefix of actions share its roll-out (prefix caching)."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from cwm_bench.model import Records
from cwm_bench.reference_model.program import Program, program_of
from cwm_bench.reference_model.trace_state import MAX_FACTORS, ROOT, Step, roll

MAX_LOOPS = 8  # loops of a block the slot encoder reads (deeper nests are cut)
SLOT_DIM = 2 * MAX_LOOPS + 5  # log2 extents, reduction flags, log2 iterations, reads, writes, root, derived
STEP_DIM = 7 + 2 * MAX_FACTORS + 2  # loop (log2 extent, S/R/?, axis, depth, present), factors, fractions, value, ok
HW_DIM = 8
PAD, UNK = 0, 1


def slot_features(program: Program) -> np.ndarray:
    """One row per block of the initial program, then the root slot and the derived-blocks slot."""
    rows = np.zeros((len(program.blocks) + 2, SLOT_DIM), np.float32)
    for i, block in enumerate(program.blocks):
        extents = [math.log2(max(e, 1)) for e in block.extents[:MAX_LOOPS]]
        rows[i, :len(extents)] = extents
        rows[i, MAX_LOOPS:MAX_LOOPS + len(extents)] = [k == "R" for k in block.kinds[:MAX_LOOPS]]
        rows[i, 2 * MAX_LOOPS:2 * MAX_LOOPS + 3] = (math.log2(max(block.iterations, 1)), block.reads, block.writes)
    rows[-2, -2] = 1.0  # root
    rows[-1, -1] = 1.0  # derived blocks
    return rows


def step_features(step: Step) -> list[float]:
    has_loop = step.loop_kind != ""
    return [math.log2(1 + step.loop_extent), step.loop_kind == "S", step.loop_kind == "R", step.loop_kind == "?",
            (step.loop_axis + 1) / 8.0, (step.loop_depth + 1) / 16.0, float(has_loop),
            *step.factors, *step.fractions, step.value, float(step.resolved)]


def hardware_features(descriptors: list[str | None]) -> np.ndarray:
    """Per record, from its hardware descriptor (zeros when unknown): is_gpu; log2 cores (SMs on a GPU);
    widest vector (log2 bits / 9); AMX; log2 cache MB / 10 (CPU L2, GPU L2); log2 shared memory KB / 8;
    log2 max threads per block / 10; log2 registers per block / 16."""
    out = np.zeros((len(descriptors), HW_DIM), np.float32)
    parsed: dict[str, np.ndarray] = {}  # the records of a dataset share one or a few descriptors
    for i, text in enumerate(descriptors):
        if text:
            if text not in parsed:
                parsed[text] = _hardware_row(json.loads(text))
            out[i] = parsed[text]
    return out


def _hardware_row(hw: dict) -> np.ndarray:
    isa, details = set(hw.get("isa", ())), hw.get("details", {}) or {}
    width = 512 if "avx512f" in isa else 256 if "avx2" in isa else 128
    cache = str(details.get("cache_size", "")).split()
    cache_mb = float(cache[0]) / 1024 if cache and cache[0].replace(".", "").isdigit() else 0.0
    cache_mb = cache_mb or float(details.get("l2_cache_size_bytes", 0)) / 2**20
    gpu = hw.get("kind") == "gpu"
    return np.array((gpu, math.log2(max(hw.get("num_cores", 1), 1)), math.log2(width) / 9 if not gpu else 0.0,
                     "amx_tile" in isa, math.log2(1 + cache_mb) / 10,
                     math.log2(1 + float(details.get("max_shared_memory_per_block", 0)) / 1024) / 8,
                     math.log2(1 + float(details.get("max_threads_per_block", 0))) / 10,
                     math.log2(1 + float(details.get("registers_per_block", 0))) / 16), np.float32)


class Rolled:
    """Records rolled over their tasks' initial programs: per record its slot table and its steps."""

    def __init__(self, records: Records, kinds: dict[str, int], max_steps: int):
        programs = {w: program_of(m) for w, m in zip(
            *(records.workloads.column(c).to_pylist() for c in ("workload_id", "mod_json")), strict=True)}
        slots_of = {w: slot_features(p) for w, p in programs.items()}  # once per task, shared by its records
        tasks = records.task_ids()
        task_index = {t: i for i, t in enumerate(slots_of)}
        self.task = np.array([task_index[t] for t in tasks], np.int64)
        self.slots = [slots_of[t] for t in tasks]
        self.kind_ids, self.slot_ids, self.numbers = [], [], []
        for task, actions, slots in zip(tasks, records.actions(), self.slots, strict=True):
            steps = roll(programs[task], actions)[:max_steps]
            blocks = len(slots) - 2
            self.kind_ids.append(np.array([kinds.get(s.kind, UNK) for s in steps], np.int64))
            self.slot_ids.append(np.array([blocks if s.block == ROOT else blocks + 1 if s.block < 0 else s.block
                                           for s in steps], np.int64))
            self.numbers.append(np.array([step_features(s) for s in steps], np.float32).reshape(-1, STEP_DIM))
        self.hardware = hardware_features(records.column("hw_descriptor").to_pylist()
                                          if "hw_descriptor" in records.table.column_names else [None] * len(tasks))
        self.length = np.array([len(k) for k in self.kind_ids])

    def arrays(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The padded arrays of `rows` (numpy): kind, slot, numbers, table, valid, hardware, task."""
        n, steps = len(rows), max(1, int(self.length[rows].max()))
        slots = max(len(self.slots[r]) for r in rows)
        kind = np.zeros((n, steps), np.int64)
        slot = np.zeros((n, steps), np.int64)
        numbers = np.zeros((n, steps, STEP_DIM), np.float32)
        table = np.zeros((n, slots, SLOT_DIM), np.float32)
        valid = np.zeros((n, slots), np.float32)
        for i, r in enumerate(rows):
            k = self.length[r]
            kind[i, :k], slot[i, :k], numbers[i, :k] = self.kind_ids[r], self.slot_ids[r], self.numbers[r]
            table[i, :len(self.slots[r])], valid[i, :len(self.slots[r])] = self.slots[r], 1.0
        return {"kind": kind, "slot": slot, "numbers": numbers, "table": table, "valid": valid,
                "hardware": self.hardware[rows], "task": self.task[rows]}

    def batch(self, rows: np.ndarray, device: str) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v, device=device) for k, v in self.arrays(rows).items() if k != "task"}


def prefix_groups(arrays: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray,
                                                          np.ndarray]:
    """Prefix caching: rows of one task whose first t+1 actions (with their decisions) are equal share
    one latent state after step t. Returns per shared step `parents[t]` (for each distinct prefix of
    step t, its prefix at t-1: an index into the distinct prefixes of step t-1, or at t = 0 into the
    distinct tasks) and `reps[t]` (a row holding it); a row of each distinct task; and each row's prefix
    after the last shared step. Steps stop being shared once every row is distinct (they stay so)."""
    kind, slot, numbers = arrays["kind"], arrays["slot"], arrays["numbers"]
    n, steps = kind.shape
    tokens = np.concatenate([kind[..., None].astype(np.int32), slot[..., None].astype(np.int32),
                             np.ascontiguousarray(numbers).view(np.int32)], axis=-1)  # float bits: exact
    token_ids = _token_ids(tokens.reshape(n * steps, -1)).reshape(n, steps)
    base = int(token_ids.max()) + 1
    tasks, task_reps, current = np.unique(arrays["task"], return_index=True, return_inverse=True)
    current = current.reshape(-1).astype(np.int64)
    parents: list[np.ndarray] = []
    reps: list[np.ndarray] = []
    distinct = len(tasks)
    for t in range(steps):
        if distinct == n:
            break
        keys = current * base + token_ids[:, t]
        _, rep, current = np.unique(keys, return_index=True, return_inverse=True)
        current = current.reshape(-1).astype(np.int64)
        parents.append(keys[rep] // base)
        reps.append(rep)
        distinct = len(rep)
    return parents, reps, task_reps, current


_MIX = np.random.default_rng(20261201).integers(1, 2**62, size=64, dtype=np.int64) | 1


def _token_ids(tokens: np.ndarray) -> np.ndarray:
    """Equal rows -> equal ids. A 64-bit hash of each row (wrapping int64 arithmetic), then an exact
    check of every row against its hash's first row; a collision falls back to exact row uniqueness."""
    with np.errstate(over="ignore"):
        hashed = (tokens.astype(np.int64) * _MIX[:tokens.shape[1]]).sum(1)
    _, first, ids = np.unique(hashed, return_index=True, return_inverse=True)
    ids = ids.reshape(-1)
    if not (tokens == tokens[first[ids]]).all():
        ids = np.unique(tokens, axis=0, return_inverse=True)[1].reshape(-1)
    return ids
