"""The world model's network: slot encoder, action encoder, transition, ranking head, consistency decoder.

`forward` rolls every row; `forward_cached` rolls each distinct prefix of actions once
(`encoding.prefix_groups`) and gives the same scores. Ablation switches (`dynamics`, `hardware`,
`program`) remove one part each, for the README's ablation table.
"""

from __future__ import annotations

import torch

from cwm_bench.reference_model.encoding import HW_DIM, PAD, SLOT_DIM, STEP_DIM

CONSISTENCY_DIM = 2 * 164  # mean and max over stores of MetaSchedule's per-store features


class WorldNet(torch.nn.Module):
    def __init__(self, vocab: int, d: int, dynamics: bool = True, hardware: bool = True, program: bool = True):
        super().__init__()
        self.dynamics, self.use_hardware, self.use_program = dynamics, hardware, program
        self.slot_encoder = torch.nn.Sequential(torch.nn.Linear(SLOT_DIM, d), torch.nn.ReLU(), torch.nn.Linear(d, d))
        self.kind = torch.nn.Embedding(vocab, d, padding_idx=PAD)
        self.numbers = torch.nn.Sequential(torch.nn.Linear(STEP_DIM, d), torch.nn.ReLU(), torch.nn.Linear(d, d))
        self.cell = torch.nn.GRUCell(2 * d, d)
        self.write = torch.nn.Linear(2 * d, d)
        self.bag = torch.nn.Linear(2 * d, d)  # only without dynamics: actions pooled, no state carried
        self.head = torch.nn.Sequential(torch.nn.Linear(3 * d + HW_DIM, d), torch.nn.ReLU(), torch.nn.Linear(d, 1))
        self.decoder = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(), torch.nn.Linear(d, CONSISTENCY_DIM))

    def _start(self, table: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.use_program:
            table = torch.zeros_like(table)
        slots = self.slot_encoder(table) * valid.unsqueeze(-1)  # (B, S, d)
        return slots, slots.sum(1) / valid.sum(1, keepdim=True).clamp(min=1)

    def _step(self, a, at, step, h, slots):
        index = torch.arange(len(at), device=at.device)
        h_new = self.cell(torch.cat([a, slots[index, at]], -1), h)
        h = step * h_new + (1 - step) * h
        delta = torch.tanh(self.write(torch.cat([a, h], -1))) * step
        return h, slots.index_put((index, at), slots[index, at] + delta)

    def _head(self, h, slots, valid, actions, live, hardware) -> torch.Tensor:
        pooled_slots = slots.sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        pooled_actions = (actions * live.unsqueeze(-1)).sum(1) / live.sum(1, keepdim=True).clamp(min=1)
        if not self.use_hardware:
            hardware = torch.zeros_like(hardware)
        return self.head(torch.cat([h, pooled_slots, pooled_actions, hardware], -1)).squeeze(-1)

    def forward(self, kind, slot, numbers, table, valid, hardware, probes: torch.Tensor | None = None):
        """Scores (B,); with `probes` (B, P) step counts, also the states after that many actions (B, P, d)."""
        slots, h = self._start(table, valid)
        actions = self.kind(kind) + self.numbers(numbers)  # (B, T, d)
        live = (kind != PAD).float()
        states = [h]
        if self.dynamics:
            for t in range(kind.shape[1]):
                h, slots = self._step(actions[:, t], slot[:, t], live[:, t].unsqueeze(-1), h, slots)
                states.append(h)
        else:  # bag of actions: each action with its slot, pooled; nothing rolled forward
            index = torch.arange(len(kind), device=kind.device)[:, None]
            bag = torch.tanh(self.bag(torch.cat([actions, slots[index, slot]], -1))) * live.unsqueeze(-1)
            h = h + bag.sum(1) / live.sum(1, keepdim=True).clamp(min=1)
        scores = self._head(h, slots, valid, actions, live, hardware)
        if probes is None:
            return scores
        if not self.dynamics:  # without dynamics there are no intermediate states to probe
            return scores, h.unsqueeze(1).expand(-1, probes.shape[1], -1)
        stacked = torch.stack(states, 1)  # (B, T + 1, d): state after 0..T actions
        rows = torch.arange(len(kind), device=kind.device)[:, None]
        picked = stacked[rows, probes.to(kind.device).clamp(max=kind.shape[1])]
        return scores, picked

    def forward_cached(self, kind, slot, numbers, table, valid, hardware, groups) -> torch.Tensor:
        """`forward`'s scores, rolling each distinct prefix once (`encoding.prefix_groups(...)`)."""
        if not self.dynamics:
            return self.forward(kind, slot, numbers, table, valid, hardware)
        device = kind.device
        parents = [torch.as_tensor(x, device=device) for x in groups[0]]
        reps = [torch.as_tensor(x, device=device) for x in groups[1]]
        task_reps, rows = torch.as_tensor(groups[2], device=device), torch.as_tensor(groups[3], device=device)
        slots, h = self._start(table[task_reps], valid[task_reps])
        actions = self.kind(kind) + self.numbers(numbers)
        live = (kind != PAD).float()
        for t, (p, r) in enumerate(zip(parents, reps, strict=True)):  # shared steps: one state per prefix
            h, slots = self._step(actions[r, t], slot[r, t], live[r, t].unsqueeze(-1), h[p], slots[p])
        h, slots = h[rows], slots[rows]
        for t in range(len(parents), kind.shape[1]):  # every row distinct from here on
            h, slots = self._step(actions[:, t], slot[:, t], live[:, t].unsqueeze(-1), h, slots)
        return self._head(h, slots, valid, actions, live, hardware)
