"""LambdaRank on hand-made tensors: order, gradient direction, task groups, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cwm_bench.baselines.ranking_loss import lambdarank_group, lambdarank_loss, task_batches

LATENCY = torch.tensor([1.0, 2.0, 4.0, 8.0])  # program 0 is the fastest


def test_perfect_order_has_lower_loss_than_reversed():
    perfect = torch.tensor([3.0, 2.0, 1.0, 0.0])
    assert lambdarank_group(perfect, LATENCY) < lambdarank_group(perfect.flip(0), LATENCY)


def test_gradient_pushes_faster_programs_up():
    scores = torch.zeros(4, requires_grad=True)  # all tied: every pair is wrong-ish
    lambdarank_group(scores, LATENCY).backward()
    grad = scores.grad.numpy()
    # gradient descent subtracts grad: the fastest goes up, the slowest goes down
    assert grad[0] < 0 < grad[3]
    assert np.all(np.diff(grad) > 0)


def test_pairs_stay_within_task_groups():
    scores = torch.tensor([2.0, 1.0, 0.5, 0.0])
    latency = torch.tensor([1.0, 2.0, 100.0, 200.0])
    groups = [torch.tensor([0, 1]), torch.tensor([2, 3])]
    loss = lambdarank_loss(scores, latency, groups)
    # shifting one task's scores changes nothing: tasks are never compared with each other
    shifted = scores + torch.tensor([0.0, 0.0, 50.0, 50.0])
    assert lambdarank_loss(shifted, latency, groups) == pytest.approx(loss.item())
    expected = (lambdarank_group(scores[:2], latency[:2]) + lambdarank_group(scores[2:], latency[2:])) / 2
    assert loss.item() == pytest.approx(expected.item())


def test_degenerate_groups_give_zero_loss():
    scores = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    assert lambdarank_loss(scores, torch.tensor([1.0, 2.0, 3.0]), [torch.tensor([0])]).item() == 0.0
    assert lambdarank_group(scores, torch.ones(3)).item() == 0.0  # all tied latencies: no pair


def test_task_batches_cover_every_record_once_within_tasks():
    tasks = np.array(["a"] * 7 + ["b"] * 3 + ["c"])
    batches = task_batches(tasks, group_size=3, tasks_per_batch=2, rng=np.random.default_rng(0))
    groups = [g for batch in batches for g in batch]
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(tasks)))
    assert all(len(g) <= 3 and len(set(tasks[g])) == 1 for g in groups)
    assert all(len(batch) <= 2 for batch in batches)
