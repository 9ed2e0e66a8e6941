"""Ranking metrics for one task: `score` (higher = predicted faster) against measured `latency`."""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import ndcg_score


def pairwise_accuracy(latency: np.ndarray, score: np.ndarray) -> float:
    """Ordered-pair accuracy (OPA): share of pairs with different latencies whose scores order them
    correctly; a tie in score counts half."""
    lat_diff = latency[:, None] - latency[None, :]
    score_diff = score[:, None] - score[None, :]
    pairs = np.triu(lat_diff != 0, k=1)
    if not pairs.any():
        return float("nan")
    right = (np.sign(score_diff) == -np.sign(lat_diff)) & (score_diff != 0)
    ties = score_diff == 0
    return float((right[pairs].sum() + 0.5 * ties[pairs].sum()) / pairs.sum())


def kendall_tau(latency: np.ndarray, score: np.ndarray) -> float:
    return float(stats.kendalltau(score, -latency).statistic)


def spearman_rho(latency: np.ndarray, score: np.ndarray) -> float:
    return float(stats.spearmanr(score, -latency).statistic)


def _top_k(score: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-score, kind="stable")[:k]


def top_k_score(latency: np.ndarray, score: np.ndarray, k: int) -> float:
    """TenSet's top-k score: best latency / best latency among the k highest-scored (1 = perfect)."""
    return float(latency.min() / latency[_top_k(score, k)].min())


def slowdown_at_k(latency: np.ndarray, score: np.ndarray, k: int) -> float:
    """TpuGraphs' slowdown@k: best latency among the top-k predicted / true best - 1 (0 = perfect)."""
    return float(latency[_top_k(score, k)].min() / latency.min() - 1.0)


def ndcg_at_k(latency: np.ndarray, score: np.ndarray, k: int) -> float:
    """NDCG@k with relevance best/latency (1 for the fastest program, towards 0 for slow ones)."""
    relevance = latency.min() / latency
    return float(ndcg_score(relevance[None, :], score[None, :], k=k))


# Which way is better, per metric (data for tables that sort or rank by a metric).
METRIC_DIRECTION = {"opa": "higher", "kendall_tau": "higher", "spearman_rho": "higher", "top1": "higher",
                    "top5": "higher", "slowdown@1": "lower", "slowdown@5": "lower", "ndcg@5": "higher",
                    "ndcg@10": "higher"}

TASK_METRICS = {
    "opa": pairwise_accuracy,
    "kendall_tau": kendall_tau,
    "spearman_rho": spearman_rho,
    "top1": lambda lat, s: top_k_score(lat, s, 1),
    "top5": lambda lat, s: top_k_score(lat, s, 5),
    "slowdown@1": lambda lat, s: slowdown_at_k(lat, s, 1),
    "slowdown@5": lambda lat, s: slowdown_at_k(lat, s, 5),
    "ndcg@5": lambda lat, s: ndcg_at_k(lat, s, 5),
    "ndcg@10": lambda lat, s: ndcg_at_k(lat, s, 10),
}
