"""TenSet's MLP cost model (Zheng et al., NeurIPS 2021 datasets track), over MetaSchedule features.

Reproduces TenSet's `SegmentSumMLP`: each buffer store's 164-d feature vector goes through an MLP
encoder, the store embeddings of a program are summed, two residual Linear+ReLU blocks and a linear
head give the score; features are divided by their per-column max over the training set; trained
with LambdaRank, Adam (weight decay 1e-6) and gradient clipping 0.5 as in TenSet.

Deviations: features are MetaSchedule's `PerStoreFeature` (the same 164 columns as Ansor's, from TIR);
no workload embedding (TenSet's optional 160-d task vector); LambdaRank pairs stay within one task
and batches are groups of tasks (`ranking_loss.task_batches`) instead of mixed 512-program batches.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from cwm_bench.baselines.ranking_loss import fit_ranker
from cwm_bench.model import CostModel, Records
from cwm_bench.model.registry import register_model

WEIGHTS_FILE = "tenset_mlp.safetensors"
NUM_FEATURES = 164
DEFAULTS: dict[str, Any] = {
    "hidden": 256,  # TenSet's hidden_dim
    "layers": 2,  # Linear+ReLU layers in the per-store encoder (TenSet: 2)
    "residual_layers": 2,  # residual blocks after the segment sum (TenSet: 2)
    "epochs": 50,  # TenSet's LambdaRank setting
    "lr": 7e-4,
    "tasks_per_batch": 4,
    "group_size": 128,  # programs of one task ranked together; 4 x 128 = TenSet's 512 per batch
    "seed": 0,
    "device": "cpu",
}


class SegmentSumMLP(torch.nn.Module):
    """Per-store encoder, sum over a program's stores, residual MLP, linear head."""

    def __init__(self, hidden: int, layers: int, residual_layers: int):
        super().__init__()
        encoder: list[torch.nn.Module] = []
        for i in range(layers):
            encoder += [torch.nn.Linear(NUM_FEATURES if i == 0 else hidden, hidden), torch.nn.ReLU()]
        self.encoder = torch.nn.Sequential(*encoder)
        self.residual = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU()) for _ in range(residual_layers))
        self.head = torch.nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor, program_of_store: torch.Tensor, num_programs: int) -> torch.Tensor:
        stores = self.encoder(features)
        x = stores.new_zeros((num_programs, stores.shape[1])).index_add_(0, program_of_store, stores)
        for block in self.residual:
            x = block(x) + x
        return self.head(x).squeeze(-1)


class _Stores:
    """All programs' store features in one tensor, with offsets to gather any subset of programs."""

    def __init__(self, features: list[np.ndarray], scale: torch.Tensor, device: str):
        self.sizes = np.array([len(f) for f in features], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        stacked = np.concatenate(features) if self.sizes.sum() else np.zeros((0, NUM_FEATURES), np.float32)
        self.data = (torch.from_numpy(stacked) / scale).to(device)
        self.device = device

    def gather(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        sizes = self.sizes[rows]
        first = np.repeat(self.starts[rows] - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
        store_index = first + np.arange(sizes.sum())
        program = np.repeat(np.arange(len(rows)), sizes)
        return (self.data[torch.from_numpy(store_index)],
                torch.from_numpy(program).to(self.device))


@register_model("tenset-mlp")
class TenSetMLPModel(CostModel):
    """`create_model("tenset-mlp", hidden=256, layers=2, epochs=50, lr=7e-4, tasks_per_batch=4, seed=0)`."""

    defaults = DEFAULTS
    inputs: ClassVar[frozenset[str]] = frozenset({"features"})
    option_ranges: ClassVar[dict[str, tuple]] = {
        "hidden": (1, None, "[]"), "layers": (1, None, "[]"), "residual_layers": (0, None, "[]"),
        "epochs": (0, None, "[]"), "lr": (0, None, "()"), "tasks_per_batch": (1, None, "[]"),
        "group_size": (2, None, "[]")}
    fine_tune_options: ClassVar[frozenset[str]] = frozenset(
        {"epochs", "lr", "tasks_per_batch", "group_size", "seed", "device"})

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.net: SegmentSumMLP | None = None
        self.scale: torch.Tensor | None = None

    @property
    def is_fitted(self) -> bool:
        return self.net is not None and self.scale is not None

    def _build(self) -> SegmentSumMLP:
        c = self.config
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(int(c["seed"]))
            net = SegmentSumMLP(int(c["hidden"]), int(c["layers"]), int(c["residual_layers"]))
        return net.to(c["device"])

    def fit(self, train: Records, progress: bool = True) -> None:
        if int(self.config["epochs"]) < 1:
            raise ValueError(f"{self.name}: epochs must be >= 1 to train from scratch (0 only when fine-tuning)")
        features = train.features()
        stacked = np.concatenate(features) if features else np.zeros((0, NUM_FEATURES), np.float32)
        # TenSet's normalization: divide each column by its max over the training set (1 if never > 0)
        peak = np.abs(stacked).max(axis=0) if len(stacked) else np.ones(NUM_FEATURES, np.float32)
        self.scale = torch.from_numpy(np.where(peak > 0, peak, 1.0).astype(np.float32))
        self.net = self._build()
        self._train(train, features, progress)

    def fine_tune(self, train: Records, progress: bool = True) -> None:
        """Continue LambdaRank training from the loaded weights (config `epochs` and `lr`: pass fewer or
        lower with `--config`). The checkpoint's feature scale is kept: the weights were learned on
        inputs divided by it, so re-deriving it from new records would shift every input."""
        if not self.is_fitted:
            raise RuntimeError("tenset-mlp: fine_tune() needs a fitted model; load_weights() or fit() first")
        self._train(train, train.features(), progress)

    def _train(self, train: Records, features: list[np.ndarray], progress: bool) -> None:
        assert self.net is not None and self.scale is not None
        stores = _Stores(features, self.scale, self.config["device"])
        net = self.net

        def forward(rows: np.ndarray) -> torch.Tensor:
            x, program = stores.gather(rows)
            return net(x, program, len(rows))

        c = self.config
        fit_ranker(net, forward, train.latency(), train.task_ids(), epochs=int(c["epochs"]), lr=float(c["lr"]),
                   group_size=int(c["group_size"]), tasks_per_batch=int(c["tasks_per_batch"]),
                   seed=int(c["seed"]), progress=progress)

    @torch.no_grad()
    def score(self, records: Records, batch_size: int = 4096) -> np.ndarray:
        if self.net is None or self.scale is None:
            raise RuntimeError("tenset-mlp: call fit() or load_weights() before score()")
        self.net.eval()
        stores = _Stores(records.features(), self.scale, self.config["device"])
        out = [np.zeros(0, np.float32)]
        for start in range(0, len(records), batch_size):
            rows = np.arange(start, min(start + batch_size, len(records)))
            x, program = stores.gather(rows)
            out.append(self.net(x, program, len(rows)).float().cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    def save_weights(self, folder: str) -> None:
        if self.net is None or self.scale is None:
            raise RuntimeError("tenset-mlp: nothing to save; fit() first")
        tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        tensors["feature_scale"] = self.scale.contiguous()
        save_file(tensors, os.path.join(folder, WEIGHTS_FILE))

    def load_weights(self, folder: str) -> None:
        tensors = load_file(os.path.join(folder, WEIGHTS_FILE))
        self.scale = tensors.pop("feature_scale")
        self.net = self._build()
        self.net.load_state_dict({k.removeprefix("net."): v for k, v in tensors.items()})
        self.net.eval()
