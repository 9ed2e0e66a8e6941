"""LambdaRank (Burges 2010) as a torch loss over task groups, as TenSet's MLP and TLP train with it.

For each task group: relevance = min latency / latency (1 for the fastest program), gain = 2^rel - 1,
and every pair (i, j) with rel_i > rel_j contributes a logistic loss `log(1 + exp(-sigma (s_i - s_j)))`
weighted by |ΔNDCG_ij|, the NDCG change if i and j swapped places in the current ranking by score.
Deviation from TenSet's copy of allRank's loss: pairs never cross tasks (TenSet ranks a mixed batch
of 512 programs from many tasks, whose latencies are not comparable), and each group's loss is
normalized by its summed weights so tasks of any size count alike.

Also here: `task_batches` (an epoch as batches of within-task groups) and `fit_ranker`, the training
loop the neural baselines share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm


def relevance(latency: torch.Tensor) -> torch.Tensor:
    """min latency / latency within one task: in (0, 1], 1 for the fastest."""
    return latency.min() / latency


def lambdarank_group(scores: torch.Tensor, latency: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """The loss of one task's programs (1-D `scores`, higher = predicted faster; `latency` > 0)."""
    n = scores.shape[0]
    if n < 2:
        return scores.sum() * 0.0  # keeps the graph (and the device) without contributing
    rel = relevance(latency.to(scores.dtype))
    gain = torch.pow(2.0, rel) - 1.0
    positions = torch.arange(n, device=scores.device, dtype=scores.dtype)
    discount = 1.0 / torch.log2(positions + 2.0)
    ideal_dcg = (torch.sort(gain, descending=True).values * discount).sum()
    # Current rank of each program by score; the weights are constants (no gradient through sorting).
    with torch.no_grad():
        rank = torch.empty(n, dtype=torch.long, device=scores.device)
        rank[torch.argsort(scores, descending=True, stable=True)] = torch.arange(n, device=scores.device)
        disc = discount[rank]
        delta_ndcg = ((gain[:, None] - gain[None, :]).abs() * (disc[:, None] - disc[None, :]).abs()
                      / ideal_dcg.clamp_min(1e-12))
    better = rel[:, None] > rel[None, :]  # i should rank above j
    weight = delta_ndcg * better
    total = weight.sum()
    if total <= 0:
        return scores.sum() * 0.0
    pair_loss = torch.nn.functional.softplus(-sigma * (scores[:, None] - scores[None, :]))
    return (weight * pair_loss).sum() / total


def lambdarank_loss(scores: torch.Tensor, latency: torch.Tensor, groups: Sequence[torch.Tensor],
                    sigma: float = 1.0) -> torch.Tensor:
    """Mean LambdaRank loss over task groups; `groups` holds index tensors into `scores`/`latency`."""
    losses = [lambdarank_group(scores[g], latency[g], sigma) for g in groups if g.numel() >= 2]
    if not losses:
        return scores.sum() * 0.0
    return torch.stack(losses).mean()


def task_batches(task_ids: np.ndarray, group_size: int, tasks_per_batch: int,
                 rng: np.random.Generator) -> list[list[np.ndarray]]:
    """One epoch of training batches: each task's records shuffled and cut into groups of at most
    `group_size` (pairs stay within a task; big tasks do not blow up the O(n²) pair matrix), groups
    shuffled, `tasks_per_batch` groups per batch. Every record appears exactly once."""
    groups: list[np.ndarray] = []
    for task in np.unique(task_ids):
        rows = rng.permutation(np.flatnonzero(task_ids == task))
        groups.extend(rows[i:i + group_size] for i in range(0, len(rows), group_size))
    order = rng.permutation(len(groups))
    groups = [groups[i] for i in order]
    return [groups[i:i + tasks_per_batch] for i in range(0, len(groups), tasks_per_batch)]


def fit_ranker(net: torch.nn.Module, forward: Callable[[np.ndarray], torch.Tensor], latency: np.ndarray,
               task_ids: np.ndarray, *, epochs: int, lr: float, group_size: int, tasks_per_batch: int,
               seed: int, weight_decay: float = 1e-6, grad_clip: float = 0.5,
               progress: bool = False) -> list[float]:
    """Train `net` with LambdaRank per task group; `forward(rows)` scores the records `rows` (or returns
    `(scores, extra_loss)`: an auxiliary loss added to the ranking loss, e.g. the world model's consistency).
    Adam, weight decay and gradient clipping as in TenSet's MLP trainer. Returns the loss per epoch."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    lat = torch.as_tensor(latency, dtype=torch.float32)
    history: list[float] = []
    net.train()
    for _ in tqdm(range(epochs), desc="epochs", disable=not progress, leave=False):
        losses = []
        for batch in task_batches(task_ids, group_size, tasks_per_batch, rng):
            rows = np.concatenate(batch)
            bounds = np.cumsum([0] + [len(g) for g in batch])
            groups = [torch.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            out = forward(rows)
            scores, extra = out if isinstance(out, tuple) else (out, None)
            loss = lambdarank_loss(scores, lat[rows], groups)
            if extra is not None:
                loss = loss + extra
            if not loss.requires_grad or loss.item() == 0.0:
                continue  # no rankable pair in this batch
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            optimizer.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)) if losses else 0.0)
    net.eval()
    return history
