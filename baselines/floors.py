"""Floors every learned cost model must beat: random scores and "less arithmetic is faster".

Neither learns anything: `fit` is a no-op and a checkpoint is only its config.json.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import numpy as np

from cwm_bench.model.base import CostModel
from cwm_bench.model.records import Records
from cwm_bench.model.registry import register_model

# MetaSchedule's per-store feature layout (TVM src/s_tir/meta_schedule/feature_extractor/
# per_store_feature.cc, group 1 `ArithOps::Export`): columns 0-6 are float_mad, float_add_sub,
# float_mul, float_div_mod, float_cmp, float_math_func, float_other_func. Each is the op count of the
# store's right-hand side times the product of its enclosing loop extents (so: dynamic op count),
# stored as slog(x) = log2(x + 1).
FLOAT_OP_COLUMNS = slice(0, 7)


def float_ops(features: np.ndarray) -> float:
    """Dynamic float operations of one program: per-store float-op counts, un-logged, summed."""
    if features.size == 0:
        return 0.0
    return float(np.exp2(features[:, FLOAT_OP_COLUMNS].astype(np.float64)).sum() - features.shape[0] * 7)


@register_model("random")
class RandomModel(CostModel):
    """Uniform random scores (config: `seed`). A score depends only on (seed, record_id), so it does
    not change with batch order or size. Its expected pairwise accuracy is 0.5."""

    trainable: ClassVar[bool] = False
    inputs: ClassVar[frozenset[str]] = frozenset({"record_id"})
    defaults: ClassVar[dict] = {"seed": 0}

    def __init__(self, **config):
        super().__init__(**config)
        self.seed = int(self.config["seed"])

    def fit(self, train: Records, progress: bool = True) -> None:
        pass  # nothing to learn

    def score(self, records: Records) -> np.ndarray:
        ids = records.record_ids()
        return np.array([int.from_bytes(hashlib.sha1(f"{self.seed}:{i}".encode()).digest()[:8], "little") / 2.0**64
                         for i in ids], dtype=np.float64)


@register_model("flops")
class FlopsModel(CostModel):
    """Score = -(estimated arithmetic work): fewer float operations means predicted faster.

    The workload's FLOP count is the same for every schedule of a task, so within a task it cannot
    rank anything. The schedule-dependent estimate used instead is the total dynamic float-op count
    read from the per-store features (see `FLOAT_OP_COLUMNS`): it grows with padding from imperfect
    tiles, rfactor, redundant compute-at and similar. Many schedules tie; ties score equal. Records
    without per-store features fall back to the workload FLOPs.
    """

    trainable: ClassVar[bool] = False
    inputs: ClassVar[frozenset[str]] = frozenset({"features"})
    defaults: ClassVar[dict] = {}  # no options

    def fit(self, train: Records, progress: bool = True) -> None:
        pass  # nothing to learn

    def score(self, records: Records) -> np.ndarray:
        work = np.array([float_ops(f) for f in records.features()], dtype=np.float64)
        missing = work <= 0
        if missing.any():
            work[missing] = records.workload_column("flops").astype(np.float64)[missing]
        return -work
