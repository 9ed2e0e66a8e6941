"""Every metric on hand-made cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cwm_bench.metrics.ranking import (
    kendall_tau,
    ndcg_at_k,
    pairwise_accuracy,
    slowdown_at_k,
    spearman_rho,
    top_k_score,
)

LAT = np.array([1.0, 2.0, 4.0, 8.0])  # program 0 is fastest
PERFECT = np.array([4.0, 3.0, 2.0, 1.0])  # higher score = faster
REVERSED = -PERFECT


def test_pairwise_accuracy_known_answers():
    assert pairwise_accuracy(LAT, PERFECT) == 1.0
    assert pairwise_accuracy(LAT, REVERSED) == 0.0
    swapped = np.array([3.0, 4.0, 2.0, 1.0])  # one of six pairs wrong
    assert pairwise_accuracy(LAT, swapped) == pytest.approx(5 / 6)
    assert pairwise_accuracy(LAT, np.zeros(4)) == 0.5  # all score ties count half
    assert math.isnan(pairwise_accuracy(np.ones(3), PERFECT[:3]))  # no pair with different latency


def test_rank_correlations():
    assert kendall_tau(LAT, PERFECT) == pytest.approx(1.0)
    assert spearman_rho(LAT, REVERSED) == pytest.approx(-1.0)
    assert kendall_tau(LAT, np.array([3.0, 4.0, 2.0, 1.0])) == pytest.approx(4 / 6)


def test_top_k_and_slowdown():
    worst_first = np.array([1.0, 2.0, 3.0, 4.0])  # predicts program 3 (8.0) as fastest
    assert top_k_score(LAT, PERFECT, 1) == 1.0
    assert top_k_score(LAT, worst_first, 1) == pytest.approx(1 / 8)
    assert top_k_score(LAT, worst_first, 4) == 1.0
    assert slowdown_at_k(LAT, worst_first, 1) == pytest.approx(7.0)
    assert slowdown_at_k(LAT, worst_first, 2) == pytest.approx(3.0)  # best of {8, 4} is 4
    assert slowdown_at_k(LAT, PERFECT, 1) == 0.0


def test_ndcg():
    assert ndcg_at_k(LAT, PERFECT, 4) == pytest.approx(1.0)
    relevance = LAT.min() / LAT  # [1, .5, .25, .125]
    ideal = sum(r / np.log2(i + 2) for i, r in enumerate(relevance[:2]))
    got = relevance[3] / np.log2(2) + relevance[2] / np.log2(3)
    assert ndcg_at_k(LAT, np.array([1.0, 2.0, 3.0, 4.0]), 2) == pytest.approx(got / ideal)
