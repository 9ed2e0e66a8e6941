"""Ansor / MetaSchedule's XGBoost cost model, reproduced offline.

`AnsorXGBModel` follows TVM's `XGBModel` (tvm/s_tir/meta_schedule/cost_model/xgb_model.py, itself
Ansor's `XGBModel` from the removed auto_scheduler): per-store features (164 floats per buffer store,
`feature_extractor/per_store_feature.py`), "pack-sum" training where every store row is a sample and a
program's prediction is the sum over its stores, label min_cost / cost within each workload, squared
error through the pack-sum objective, TVM's booster defaults (`XGBConfig`). Differences, all on
purpose: early stopping watches p-rmse on a held-out slice of the training records (TVM watches the
training set itself, having nothing else online), the booster is cut at its best iteration, and it
is saved as XGBoost JSON (TVM tars a binary model with pickled numpy data).

`AnsorXGBRankModel` keeps the features but learns a ranking: XGBoost `rank:pairwise` with one query
group per workload. XGBoost's ranking objectives need one row per ranked item, so pack-sum becomes
summing a program's store features into one vector (as TenSet's "sum" feature pooling does).
"""

from __future__ import annotations

import abc
import os
from typing import Any, ClassVar

import numpy as np
import pyarrow.compute as pc
import xgboost as xgb

from cwm_bench.model.base import CostModel
from cwm_bench.model.records import Records
from cwm_bench.model.registry import register_model

FEATURE_DIM = 164
MODEL_FILE = "model.json"

# TVM's XGBConfig defaults; seed 43 as there. nthread None = XGBoost's default (all cores).
DEFAULTS: dict[str, Any] = {"max_depth": 10, "gamma": 0.001, "min_child_weight": 0.0, "eta": 0.2, "seed": 43,
                            "nthread": None, "tree_method": "auto", "num_boost_round": 10000,
                            "early_stopping_rounds": 50, "valid_fraction": 0.1}


def store_rows(records: Records) -> tuple[np.ndarray, np.ndarray]:
    """All store rows stacked, (total_stores, 164) float32, and the record index of each row.

    Reads the Arrow column directly: going through Python lists is ~100x slower on a real dataset."""
    column = records.column("features")
    counts = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(pc.list_flatten(column)).to_numpy(zero_copy_only=False)
    return values.astype(np.float32).reshape(-1, FEATURE_DIM), np.repeat(np.arange(len(counts)), counts)


def relative_throughput(latency: np.ndarray, tasks: np.ndarray) -> np.ndarray:
    """min_cost / cost within each workload: 1 for a task's fastest program (TVM's label)."""
    _, group = np.unique(tasks, return_inverse=True)
    best = np.full(group.max() + 1 if len(group) else 0, np.inf)
    np.minimum.at(best, group, latency)
    return best[group] / latency


def holdout_mask(tasks: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for held-out programs: `fraction` of each task with enough programs for >= 2 held out, so a
    held-out task still has pairs to rank. All False when no task qualifies (then eval on train)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(tasks), dtype=bool)
    _, group = np.unique(tasks, return_inverse=True)
    order = np.argsort(group, kind="stable")
    for rows in np.split(order, np.flatnonzero(np.diff(group[order])) + 1):
        k = int(len(rows) * fraction)
        if k >= 2 and len(rows) - k >= 2:
            mask[rng.choice(rows, size=k, replace=False)] = True
    return mask


class _Progress(xgb.callback.TrainingCallback):
    """A tqdm bar over boosting rounds (closed early when early stopping ends training)."""

    def __init__(self, total: int, desc: str):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="round", dynamic_ncols=True)

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        self.bar.update(1)
        for data in evals_log.values():
            for metric, values in data.items():
                self.bar.set_postfix_str(f"{metric} {values[-1]:.4f}")
        return False

    def after_training(self, model):
        self.bar.close()
        return model


class _XGBBase(CostModel):
    """Shared: config handling, boosting with early stopping (from scratch or on top of a loaded
    booster), JSON save/load."""

    defaults = DEFAULTS
    inputs: ClassVar[frozenset[str]] = frozenset({"features"})
    option_types: ClassVar[dict[str, type]] = {"nthread": int}
    option_ranges: ClassVar[dict[str, tuple]] = {
        "max_depth": (1, None, "[]"), "gamma": (0, None, "[]"), "min_child_weight": (0, None, "[]"),
        "eta": (0, 1, "(]"), "nthread": (1, None, "[]"), "num_boost_round": (1, None, "[]"),
        "early_stopping_rounds": (1, None, "[]"), "valid_fraction": (0, 1, "[)")}
    # Boosting more trees on a loaded booster works with any booster parameters for the new trees.
    fine_tune_options: ClassVar[frozenset[str]] = frozenset(DEFAULTS)

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.params = dict(self.config)
        self.booster: xgb.Booster | None = None

    @property
    def is_fitted(self) -> bool:
        return self.booster is not None

    def fit(self, train: Records, progress: bool = True) -> None:
        self._train(train, progress, init=None)

    def fine_tune(self, train: Records, progress: bool = True) -> None:
        """Boost up to `num_boost_round` more trees on the loaded booster (XGBoost's `xgb_model`), with
        the same early stopping as `fit`: the new trees start from the loaded model's predictions."""
        self._train(train, progress, init=self._require_booster())

    @abc.abstractmethod
    def _train(self, train: Records, progress: bool, init: xgb.Booster | None) -> None:
        """Boost on `train`, from scratch or (`init`) on top of a loaded booster."""

    def _booster_params(self, **extra: Any) -> dict[str, Any]:
        keys = ("max_depth", "gamma", "min_child_weight", "eta", "seed", "tree_method")
        params = {k: self.params[k] for k in keys}
        if self.params["nthread"] is not None:
            params["nthread"] = self.params["nthread"]
        return {**params, **extra}

    def _boost(self, params: dict, dtrain: xgb.DMatrix, watch: xgb.DMatrix, metric, progress: bool,
               obj=None, init: xgb.Booster | None = None) -> None:
        callbacks = [_Progress(self.params["num_boost_round"], f"{self.name} rounds")] if progress else []
        booster = xgb.train({**params, "disable_default_eval_metric": 1}, dtrain,
                            num_boost_round=self.params["num_boost_round"], obj=obj, evals=[(watch, "valid")],
                            custom_metric=metric, early_stopping_rounds=self.params["early_stopping_rounds"],
                            verbose_eval=False, callbacks=callbacks, xgb_model=init)
        # Trees after the best round only fit noise in the held-out slice's eyes: drop them. With
        # `init`, best_iteration counts the loaded trees too, and is never before the first new one.
        self.booster = booster[: booster.best_iteration + 1]

    def _require_booster(self) -> xgb.Booster:
        if self.booster is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit() or load a checkpoint first")
        return self.booster

    def save_weights(self, folder: str) -> None:
        self._require_booster().save_model(os.path.join(folder, MODEL_FILE))

    def load_weights(self, folder: str) -> None:
        booster = xgb.Booster()
        booster.load_model(os.path.join(folder, MODEL_FILE))
        if self.params["nthread"] is not None:
            booster.set_param({"nthread": self.params["nthread"]})
        self.booster = booster


@register_model("ansor-xgb")
class AnsorXGBModel(_XGBBase):
    """TVM MetaSchedule's `XGBModel` recipe (pack-sum squared error on min_cost/cost), offline."""

    def _train(self, train: Records, progress: bool, init: xgb.Booster | None) -> None:
        x, ids = store_rows(train)
        has_stores = np.bincount(ids, minlength=len(train)) > 0  # TVM drops programs without stores
        programs = np.flatnonzero(has_stores)
        if len(programs) == 0:
            raise ValueError("no training record has per-store features")
        tasks = train.task_ids()[programs]
        label = relative_throughput(train.latency()[programs], tasks)
        held = holdout_mask(tasks, self.params["valid_fraction"], self.params["seed"])
        d_train = _PackSum(x, ids, programs[~held], label[~held])
        d_valid = _PackSum(x, ids, programs[held], label[held]) if held.any() else d_train

        def obj(pred: np.ndarray, _: xgb.DMatrix) -> tuple[np.ndarray, np.ndarray]:
            return d_train.square_error(pred)

        def metric(pred: np.ndarray, _: xgb.DMatrix) -> tuple[str, float]:
            return d_valid.rmse(pred)

        self._boost(self._booster_params(), d_train.dmatrix, d_valid.dmatrix, metric, progress, obj=obj, init=init)

    def score(self, records: Records) -> np.ndarray:
        booster = self._require_booster()
        x, ids = store_rows(records)
        if len(x) == 0:
            return np.zeros(len(records))
        # minlength: trailing programs without stores still get a (zero) score
        return np.bincount(ids, weights=booster.predict(xgb.DMatrix(x)), minlength=len(records))


class _PackSum:
    """TVM's `PackSum` (xgb_model.py): store rows of some programs, each row labelled (and weighted)
    with its program's label; predictions are summed per program."""

    def __init__(self, x: np.ndarray, ids: np.ndarray, programs: np.ndarray, labels: np.ndarray):
        rows = np.isin(ids, programs)
        order = np.searchsorted(programs, ids[rows])  # programs is sorted (np.flatnonzero)
        self.ids = order
        self.row_labels = labels[order]
        self.dmatrix = xgb.DMatrix(x[rows], label=self.row_labels)
        self.dmatrix.set_weight(self.row_labels)  # as TVM does (used by the hist sketch)

    def _program_pred_per_row(self, pred: np.ndarray) -> np.ndarray:
        return np.bincount(self.ids, weights=pred)[self.ids]

    def square_error(self, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TVM's `obj_square_error`: d/dpred of the program-level squared error, weighted by the label."""
        gradient = self._program_pred_per_row(pred) - self.row_labels
        return gradient * self.row_labels, np.ones_like(gradient) * self.row_labels

    def rmse(self, pred: np.ndarray) -> tuple[str, float]:
        """TVM's `rmse` (p-rmse), over store rows as there."""
        return "p-rmse", float(np.sqrt(np.square(self._program_pred_per_row(pred) - self.row_labels).mean()))


@register_model("ansor-xgb-rank")
class AnsorXGBRankModel(_XGBBase):
    """Same features, `rank:pairwise` within each workload; a program = the sum of its store features."""

    def _train(self, train: Records, progress: bool, init: xgb.Booster | None) -> None:
        x = program_features(train)
        tasks = train.task_ids()
        label = relative_throughput(train.latency(), tasks)
        held = holdout_mask(tasks, self.params["valid_fraction"], self.params["seed"])
        d_train = _ranking_matrix(x[~held], label[~held], tasks[~held])
        watch, watch_tasks = (x[held], tasks[held]) if held.any() else (x[~held], tasks[~held])
        d_watch = _ranking_matrix(watch, label[held] if held.any() else label[~held], watch_tasks)

        def metric(pred: np.ndarray, dmatrix: xgb.DMatrix) -> tuple[str, float]:
            return "1-opa", 1.0 - _mean_pairwise_accuracy(dmatrix.get_label(), pred, dmatrix.get_uint_info("group_ptr"))

        # "mean" samples pairs uniformly per program, the classic pairwise loss; XGBoost's default
        # ("topk") focuses on the top of each list, which is LambdaMART's NDCG-style weighting.
        params = self._booster_params(objective="rank:pairwise", lambdarank_pair_method="mean",
                                      lambdarank_num_pair_per_sample=8)
        self._boost(params, d_train, d_watch, metric, progress, init=init)

    def score(self, records: Records) -> np.ndarray:
        return self._require_booster().predict(xgb.DMatrix(program_features(records))).astype(np.float64)


def program_features(records: Records) -> np.ndarray:
    """One vector per program: its store features summed, (n, 164) float32."""
    x, ids = store_rows(records)
    out = np.zeros((len(records), FEATURE_DIM), dtype=np.float32)
    starts = np.searchsorted(ids, np.arange(len(records)))
    nonempty = np.bincount(ids, minlength=len(records)) > 0
    if nonempty.any():  # ids are sorted, so each program's rows are one contiguous run
        out[nonempty] = np.add.reduceat(x, starts[nonempty], axis=0)
    return out


def _ranking_matrix(x: np.ndarray, label: np.ndarray, tasks: np.ndarray) -> xgb.DMatrix:
    order = np.argsort(tasks, kind="stable")  # XGBoost wants each query group contiguous
    _, qid = np.unique(tasks[order], return_inverse=True)
    return xgb.DMatrix(x[order], label=label[order], qid=qid)


def _mean_pairwise_accuracy(label: np.ndarray, pred: np.ndarray, group_ptr: np.ndarray) -> float:
    """Mean over groups of the share of correctly ordered pairs (higher label = faster)."""
    from cwm_bench.metrics.ranking import pairwise_accuracy

    values = [pairwise_accuracy(-label[a:b], pred[a:b]) for a, b in zip(group_ptr[:-1], group_ptr[1:], strict=True)
              if b - a >= 2]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else 0.5
