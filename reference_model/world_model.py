"""`world-model`: action-conditioned latent dynamics over the initial program (reference_model/README.md).

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
5. Consistency: the states after a few prefixes of a training subsample predict the per-store
   features of the real intermediate programs (`consistency.py`), weighted by `consistency`.
6. Prefix caching: at scoring time each distinct prefix of actions is rolled once (`prefix_cache`).
"""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from cwm_bench.baselines.ranking_loss import fit_ranker
from cwm_bench.model import CostModel, Records
from cwm_bench.model.registry import register_model
from cwm_bench.reference_model.consistency import intermediate_targets, standardize
from cwm_bench.reference_model.encoding import Rolled, prefix_groups
from cwm_bench.reference_model.network import WorldNet

WEIGHTS_FILE = "world_model.safetensors"
VOCAB_FILE = "world_model_vocab.json"

DEFAULTS: dict[str, Any] = {"d_model": 64, "max_steps": 256, "epochs": 30, "lr": 2e-3, "tasks_per_batch": 4,
                            "group_size": 128, "seed": 0, "device": "cpu",
                            "consistency": 0.1, "consistency_per_task": 12, "consistency_cuts": 3,
                            "dynamics": True, "hardware_input": True, "program_encoder": True, "prefix_cache": True}


@register_model("world-model")
class WorldModel(CostModel):
    """`create_model("world-model", d_model=64, epochs=30, consistency=0.1, seed=0, ...)`; the switches
    `dynamics`, `hardware_input`, `program_encoder` (False: ablations) and `prefix_cache` (speed only)."""

    defaults = DEFAULTS
    inputs: ClassVar[frozenset[str]] = frozenset({"actions", "hardware"})
    option_ranges: ClassVar[dict[str, tuple]] = {
        "d_model": (1, None, "[]"), "max_steps": (1, None, "[]"), "epochs": (0, None, "[]"), "lr": (0, None, "()"),
        "tasks_per_batch": (1, None, "[]"), "group_size": (2, None, "[]"), "consistency": (0, None, "[]"),
        "consistency_per_task": (1, None, "[]"), "consistency_cuts": (1, 8, "[]")}
    fine_tune_options: ClassVar[frozenset[str]] = frozenset(
        {"epochs", "lr", "tasks_per_batch", "group_size", "seed", "device", "consistency", "consistency_per_task",
         "consistency_cuts", "prefix_cache"})

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.kinds: dict[str, int] = {}
        self.net: WorldNet | None = None
        # (mean, std) of the consistency targets of the last training run (not saved: training only)
        self.consistency_stats: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def is_fitted(self) -> bool:
        return self.net is not None

    def _build(self) -> WorldNet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.config["seed"]))
            c = self.config
            return WorldNet(len(self.kinds) + 2, int(c["d_model"]), dynamics=c["dynamics"],
                            hardware=c["hardware_input"], program=c["program_encoder"]).to(c["device"])

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
        weight = float(c["consistency"])
        probe_of = np.full(len(train), -1)
        if weight > 0 and c["dynamics"]:
            rows = _per_task_sample(train.task_ids(), int(c["consistency_per_task"]), int(c["seed"]))
            with tqdm(total=len(rows), desc="intermediate programs", disable=not progress, leave=False) as bar:
                probes, targets, mask = intermediate_targets(train, rows, int(c["consistency_cuts"]), bar.update)
            targets, self.consistency_stats = standardize(targets, mask)
            probe_of[rows] = np.arange(len(rows))
            probes_t, targets_t, mask_t = (torch.as_tensor(x, device=c["device"])
                                           for x in (probes, targets, mask.astype(np.float32)))

        def forward(batch_rows: np.ndarray):
            batch = rolled.batch(batch_rows, c["device"])
            at = probe_of[batch_rows]
            if weight <= 0 or not c["dynamics"] or (at < 0).all():
                return net(**batch)
            have = at >= 0
            picked = at[have]  # the rows' indices into the consistency sample
            probes = torch.zeros(len(batch_rows), probes_t.shape[1], dtype=torch.long, device=c["device"])
            have_t = torch.as_tensor(have, device=c["device"])
            probes[have_t] = probes_t[picked]
            scores, states = net(**batch, probes=probes)
            predicted = net.decoder(states[have_t])  # (R, P, CONSISTENCY_DIM)
            m = mask_t[picked]
            error = ((predicted - targets_t[picked]) ** 2).mean(-1)
            return scores, weight * (error * m).sum() / m.sum().clamp(min=1)

        fit_ranker(net, forward, train.latency(), train.task_ids(), epochs=int(c["epochs"]), lr=float(c["lr"]),
                   group_size=int(c["group_size"]), tasks_per_batch=int(c["tasks_per_batch"]), seed=int(c["seed"]),
                   progress=progress)

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
            if self.config["prefix_cache"]:
                arrays = rolled.arrays(rows)
                device = self.config["device"]
                tensors = {k: torch.as_tensor(v, device=device) for k, v in arrays.items() if k != "task"}
                scores = self.net.forward_cached(**tensors, groups=prefix_groups(arrays))
            else:
                scores = self.net(**rolled.batch(rows, self.config["device"]))
            out[rows] = scores.double().cpu().numpy()
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


def _per_task_sample(task_ids: np.ndarray, per_task: int, seed: int) -> np.ndarray:
    """Up to `per_task` seeded rows of every task: the records whose intermediate programs are built."""
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(task_ids == t))[:per_task] for t in np.unique(task_ids)]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)
