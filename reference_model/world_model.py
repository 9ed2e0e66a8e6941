"""`world-model` (first version): action-conditioned latent dynamics over the initial program.

1. State encoder: one latent slot per block of the task's initial program (its loop extents and
   kinds, buffer accesses, iteration count; `program.py`), plus a root slot and a slot shared by the
   blocks schedules create; the global state starts as the mean of the slots.
2. Action encoder: each action's kind (embedded) and its `Step` numbers from `trace_state.py`
   (extent, kind, axis and nest position of the loop it touches; tile factors as log2 and as
   fractions of the extent; categorical picks).
3. Transition: one GRU cell shared over steps updates the global state from (action, addressed
   slot), and a residual update writes back into that slot: no program is rebuilt or re-encoded.
4. Ranking head: MLP(final global state, mean of the slots, mean of the action codes, hardware
   features from the descriptor) -> score; LambdaRank within each task.

Not yet (issue 13): the consistency loss against real intermediate programs, prefix caching, the
hardware features of GPUs beyond their kind and core count, and tuning on a validation carve-out.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from cwm_bench.baselines.ranking_loss import fit_ranker
from cwm_bench.model import CostModel, Records
from cwm_bench.model.registry import register_model
from cwm_bench.reference_model.program import Program, program_of
from cwm_bench.reference_model.trace_state import MAX_FACTORS, ROOT, Step, roll

WEIGHTS_FILE = "world_model.safetensors"
VOCAB_FILE = "world_model_vocab.json"
MAX_LOOPS = 8  # loops of a block the slot encoder reads (deeper nests are cut)
SLOT_DIM = 2 * MAX_LOOPS + 5  # log2 extents, reduction flags, log2 iterations, reads, writes, root, derived
STEP_DIM = 7 + 2 * MAX_FACTORS + 2  # loop (log2 extent, S/R/?, axis, depth, present), factors, fractions, value, ok
HW_DIM = 5
PAD, UNK = 0, 1

DEFAULTS: dict[str, Any] = {"d_model": 64, "max_steps": 256, "epochs": 30, "lr": 1e-3, "tasks_per_batch": 4,
                            "group_size": 128, "seed": 0, "device": "cpu"}


def _slot_features(program: Program) -> np.ndarray:
    rows = np.zeros((len(program.blocks) + 2, SLOT_DIM), np.float32)
    for i, block in enumerate(program.blocks):
        extents = [math.log2(max(e, 1)) for e in block.extents[:MAX_LOOPS]]
        rows[i, :len(extents)] = extents
        rows[i, MAX_LOOPS:MAX_LOOPS + len(extents)] = [k == "R" for k in block.kinds[:MAX_LOOPS]]
        rows[i, 2 * MAX_LOOPS:2 * MAX_LOOPS + 3] = (math.log2(max(block.iterations, 1)), block.reads, block.writes)
    rows[-2, -2] = 1.0  # root
    rows[-1, -1] = 1.0  # derived blocks
    return rows


def _step_features(step: Step) -> list[float]:
    has_loop = step.loop_kind != ""
    return [math.log2(1 + step.loop_extent), step.loop_kind == "S", step.loop_kind == "R", step.loop_kind == "?",
            (step.loop_axis + 1) / 8.0, (step.loop_depth + 1) / 16.0, float(has_loop),
            *step.factors, *step.fractions, step.value, float(step.resolved)]


def hardware_features(descriptors: list[str | None]) -> np.ndarray:
    """Per record: is_gpu, log2 cores (SMs on GPUs), widest vector (log2 bits / 9), AMX, log2 cache MB / 10."""
    out = np.zeros((len(descriptors), HW_DIM), np.float32)
    parsed: dict[str, np.ndarray] = {}  # the records of a dataset share one or a few descriptors
    for i, text in enumerate(descriptors):
        if text:
            if text not in parsed:
                parsed[text] = _hardware_row(json.loads(text))
            out[i] = parsed[text]
    return out


def _hardware_row(hw: dict) -> np.ndarray:
    isa = set(hw.get("isa", ()))
    width = 512 if "avx512f" in isa else 256 if "avx2" in isa else 128
    cache = str(hw.get("details", {}).get("cache_size", "")).split()
    cache_mb = float(cache[0]) / 1024 if cache and cache[0].replace(".", "").isdigit() else 0.0
    return np.array((hw.get("kind") == "gpu", math.log2(max(hw.get("num_cores", 1), 1)), math.log2(width) / 9,
                     "amx_tile" in isa, math.log2(1 + cache_mb) / 10), np.float32)


class Rolled:
    """Records rolled over their tasks' initial programs: per record its slot table and its steps."""

    def __init__(self, records: Records, kinds: dict[str, int], max_steps: int):
        programs = {w: program_of(m) for w, m in zip(
            *(records.workloads.column(c).to_pylist() for c in ("workload_id", "mod_json")), strict=True)}
        slots_of = {w: _slot_features(p) for w, p in programs.items()}  # once per task, shared by its records
        tasks = records.task_ids()
        self.slots = [slots_of[t] for t in tasks]
        self.kind_ids, self.slot_ids, self.numbers = [], [], []
        for task, actions, slots in zip(tasks, records.actions(), self.slots, strict=True):
            steps = roll(programs[task], actions)[:max_steps]
            blocks = len(slots) - 2
            self.kind_ids.append(np.array([kinds.get(s.kind, UNK) for s in steps], np.int64))
            self.slot_ids.append(np.array([blocks if s.block == ROOT else blocks + 1 if s.block < 0 else s.block
                                           for s in steps], np.int64))
            self.numbers.append(np.array([_step_features(s) for s in steps], np.float32).reshape(-1, STEP_DIM))
        self.hardware = hardware_features(records.column("hw_descriptor").to_pylist()
                                          if "hw_descriptor" in records.table.column_names else [None] * len(tasks))
        self.length = np.array([len(k) for k in self.kind_ids])

    def batch(self, rows: np.ndarray, device: str) -> tuple[torch.Tensor, ...]:
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
        tensors = (kind, slot, numbers, table, valid, self.hardware[rows])
        return tuple(torch.as_tensor(t, device=device) for t in tensors)


class WorldNet(torch.nn.Module):
    def __init__(self, vocab: int, d: int):
        super().__init__()
        self.slot_encoder = torch.nn.Sequential(torch.nn.Linear(SLOT_DIM, d), torch.nn.ReLU(), torch.nn.Linear(d, d))
        self.kind = torch.nn.Embedding(vocab, d, padding_idx=PAD)
        self.numbers = torch.nn.Sequential(torch.nn.Linear(STEP_DIM, d), torch.nn.ReLU(), torch.nn.Linear(d, d))
        self.cell = torch.nn.GRUCell(2 * d, d)
        self.write = torch.nn.Linear(2 * d, d)
        self.head = torch.nn.Sequential(torch.nn.Linear(3 * d + HW_DIM, d), torch.nn.ReLU(), torch.nn.Linear(d, 1))

    def forward(self, kind, slot, numbers, table, valid, hardware) -> torch.Tensor:
        slots = self.slot_encoder(table) * valid.unsqueeze(-1)  # (B, S, d)
        h = slots.sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        actions = self.kind(kind) + self.numbers(numbers)  # (B, T, d)
        live = (kind != PAD).float()
        index = torch.arange(len(kind), device=kind.device)
        for t in range(kind.shape[1]):
            a, at = actions[:, t], slot[:, t]
            step = live[:, t].unsqueeze(-1)
            h_new = self.cell(torch.cat([a, slots[index, at]], -1), h)
            h = step * h_new + (1 - step) * h
            delta = torch.tanh(self.write(torch.cat([a, h], -1))) * step
            slots = slots.index_put((index, at), slots[index, at] + delta)
        pooled_slots = slots.sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        pooled_actions = (actions * live.unsqueeze(-1)).sum(1) / live.sum(1, keepdim=True).clamp(min=1)
        return self.head(torch.cat([h, pooled_slots, pooled_actions, hardware], -1)).squeeze(-1)


@register_model("world-model")
class WorldModel(CostModel):
    """`create_model("world-model", d_model=64, max_steps=256, epochs=30, lr=1e-3, seed=0)`."""

    defaults = DEFAULTS
    inputs: ClassVar[frozenset[str]] = frozenset({"actions", "hardware"})
    option_ranges: ClassVar[dict[str, tuple]] = {
        "d_model": (1, None, "[]"), "max_steps": (1, None, "[]"), "epochs": (0, None, "[]"), "lr": (0, None, "()"),
        "tasks_per_batch": (1, None, "[]"), "group_size": (2, None, "[]")}
    fine_tune_options: ClassVar[frozenset[str]] = frozenset(
        {"epochs", "lr", "tasks_per_batch", "group_size", "seed", "device"})

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.kinds: dict[str, int] = {}
        self.net: WorldNet | None = None

    @property
    def is_fitted(self) -> bool:
        return self.net is not None

    def _build(self) -> WorldNet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.config["seed"]))
            return WorldNet(len(self.kinds) + 2, int(self.config["d_model"])).to(self.config["device"])

    def fit(self, train: Records, progress: bool = True) -> None:
        if int(self.config["epochs"]) < 1:
            raise ValueError(f"{self.name}: epochs must be >= 1 to train from scratch (0 only when fine-tuning)")
        names = sorted({a["kind"] for actions in train.actions() for a in actions})
        self.kinds = {k: i + 2 for i, k in enumerate(names)}
        self.net = self._build()
        self._train(train, progress)

    def fine_tune(self, train: Records, progress: bool = True) -> None:
        """Continue LambdaRank training from the loaded weights (unseen action kinds read as <unk>)."""
        if self.net is None:
            raise RuntimeError("world-model: fine_tune() needs a fitted model")
        self._train(train, progress)

    def _train(self, train: Records, progress: bool) -> None:
        c, net = self.config, self.net
        rolled = Rolled(train, self.kinds, int(c["max_steps"]))
        fit_ranker(net, lambda rows: net(*rolled.batch(rows, c["device"])), train.latency(), train.task_ids(),
                   epochs=int(c["epochs"]), lr=float(c["lr"]), group_size=int(c["group_size"]),
                   tasks_per_batch=int(c["tasks_per_batch"]), seed=int(c["seed"]), progress=progress)

    @torch.no_grad()
    def score(self, records: Records, batch_size: int = 512) -> np.ndarray:
        if self.net is None:
            raise RuntimeError("world-model: call fit() or load_weights() before score()")
        self.net.eval()
        rolled = Rolled(records, self.kinds, int(self.config["max_steps"]))
        order = np.argsort(rolled.length, kind="stable")  # similar lengths together: little padding
        out = np.zeros(len(records), np.float64)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            out[rows] = self.net(*rolled.batch(rows, self.config["device"])).double().cpu().numpy()
        return out

    def save_weights(self, folder: str) -> None:
        if self.net is None:
            raise RuntimeError("world-model: nothing to save; fit() first")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
                  os.path.join(folder, WEIGHTS_FILE))
        with open(os.path.join(folder, VOCAB_FILE), "w") as handle:
            json.dump(self.kinds, handle, indent=1, sort_keys=True)

    def load_weights(self, folder: str) -> None:
        with open(os.path.join(folder, VOCAB_FILE)) as handle:
            self.kinds = json.load(handle)
        self.net = self._build()
        self.net.load_state_dict(load_file(os.path.join(folder, WEIGHTS_FILE)))
        self.net.eval()
