"""A TLP-style cost model over the schedule's action sequence (Zhai et al., "TLP: A Deep Learning-based
Cost Model for Tensor Program Tuning", ASPLOS 2023).

Reproduces TLP's idea: features come from the schedule primitives themselves (no lowering, no
per-store features), each primitive becomes one token, self-attention reads the sequence, and the
model is trained with LambdaRank. It is sequence-aware but has no latent program state: the ablation
a world model must beat.

Deviations: a token is a sum of learned embeddings (kind from a train vocabulary with <unk>;
decision ints log2-bucketed, padded to `decision_width`; input/output counts; hashed attribute and
literal-input buckets) instead of TLP's one-hot + numeric vectors; a small TransformerEncoder
(d=64, 2 layers, 4 heads) with mean pooling instead of TLP's larger attention+LSTM stack; no
multi-task (cross-hardware) heads; sequences are truncated to their first `max_len` actions.
"""

from __future__ import annotations

import json
import math
import os
import re
import zlib
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from cwm_bench.baselines.ranking_loss import fit_ranker
from cwm_bench.model import CostModel, Records
from cwm_bench.model.registry import register_model

WEIGHTS_FILE = "tlp.safetensors"
VOCAB_FILE = "tlp_vocab.json"
PAD, UNK = 0, 1
DECISION_BUCKETS = 32  # 0 pad, 1 negative, 2 zero, 3 + floor(log2 v) for v >= 1
MAX_COUNT = 15  # input/output counts are clipped here
SSA_NAME = re.compile(r"^[blv]\d+$")  # block / loop / variable references, not literals
DEFAULTS: dict[str, Any] = {
    "d_model": 64, "layers": 2, "heads": 4, "ff": 128, "dropout": 0.0,
    "max_len": 256, "decision_width": 8, "attr_width": 4, "attr_buckets": 1024,
    "epochs": 30, "lr": 1e-3, "tasks_per_batch": 4, "group_size": 64, "seed": 0, "device": "cpu",
}


def decision_bucket(value: int) -> int:
    if value < 0:
        return 1
    if value == 0:
        return 2
    return min(3 + int(math.log2(value)), DECISION_BUCKETS - 1)


def _literal(text: str) -> Any:
    """A literal input or attribute list as stored in `actions` (JSON; TVM writes None as "None")."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def attr_bucket(item: Any, buckets: int) -> int:
    """A stable hash (crc32, not Python's salted hash) of one attribute or literal input, in 1..buckets."""
    return 1 + zlib.crc32(json.dumps(item, separators=(",", ":")).encode()) % buckets


class Tokens:
    """Integer tensors of a list of action sequences, padded to `max_len`. Per step, one packed row:
    kind id | `decision_width` decision buckets | `attr_width` attribute buckets | #inputs | #outputs."""

    def __init__(self, sequences: list[list[dict]], kinds: dict[str, int], c: dict[str, Any]):
        length, self.dw, self.aw = int(c["max_len"]), int(c["decision_width"]), int(c["attr_width"])
        buckets = int(c["attr_buckets"])
        self.packed = np.zeros((len(sequences), length, 3 + self.dw + self.aw), np.int64)
        # An empty sequence still gets one (pad) position, so attention and pooling never see zero steps
        self.length = np.array([max(1, min(len(s), length)) for s in sequences], np.int64)
        cache: dict[tuple, tuple[int, ...]] = {}  # steps repeat a lot across programs of a task
        for i, actions in enumerate(sequences):
            steps = []
            for action in actions[:length]:
                inputs = action.get("inputs") or []
                key = (action["kind"], action.get("attrs") or "[]", tuple(x for x in inputs if not SSA_NAME.match(x)),
                       tuple(action.get("decision") or ()), len(inputs), len(action.get("outputs") or []))
                row = cache.get(key)
                if row is None:
                    row = cache[key] = self._encode(key, kinds, buckets)
                steps.append(row)
            if steps:
                self.packed[i, :len(steps)] = steps

    def _encode(self, key: tuple, kinds: dict[str, int], buckets: int) -> tuple[int, ...]:
        kind, attrs_json, literals, decision, n_in, n_out = key
        attrs = _literal(attrs_json)
        items = [_literal(x) for x in literals] + (attrs if isinstance(attrs, list) else [attrs])
        dec = [decision_bucket(v) for v in decision][:self.dw]
        hashed = [attr_bucket(x, buckets) for x in items][:self.aw]
        return (kinds.get(kind, UNK), *dec, *[0] * (self.dw - len(dec)), *hashed, *[0] * (self.aw - len(hashed)),
                min(n_in, MAX_COUNT), min(n_out, MAX_COUNT))

    @property
    def kind(self) -> np.ndarray:
        return self.packed[..., 0]

    @property
    def decision(self) -> np.ndarray:
        return self.packed[..., 1:1 + self.dw]

    @property
    def attr(self) -> np.ndarray:
        return self.packed[..., 1 + self.dw:1 + self.dw + self.aw]

    @property
    def counts(self) -> np.ndarray:
        return self.packed[..., -2:]

    def batch(self, rows: np.ndarray, device: str) -> tuple[torch.Tensor, ...]:
        width = int(self.length[rows].max())  # pad only to the longest sequence in the batch
        mask = np.arange(width)[None, :] >= self.length[rows][:, None]  # True = padding
        parts = (self.kind[rows, :width], self.decision[rows, :width], self.attr[rows, :width],
                 self.counts[rows, :width], mask)
        return tuple(torch.from_numpy(np.ascontiguousarray(p)).to(device) for p in parts)


class TLPNet(torch.nn.Module):
    def __init__(self, vocab_size: int, c: dict[str, Any]):
        super().__init__()
        d, small = int(c["d_model"]), 8
        self.kind = torch.nn.Embedding(vocab_size, d, padding_idx=PAD)
        self.decision = torch.nn.Embedding(DECISION_BUCKETS, small, padding_idx=0)
        # Concatenated slot embeddings keep the order of tile factors (a sum would lose it)
        self.decision_proj = torch.nn.Linear(small * int(c["decision_width"]), d)
        self.attr = torch.nn.Embedding(int(c["attr_buckets"]) + 1, small, padding_idx=0)
        self.attr_proj = torch.nn.Linear(small * int(c["attr_width"]), d)
        self.counts = torch.nn.Embedding(2 * (MAX_COUNT + 1), d)
        self.position = torch.nn.Embedding(int(c["max_len"]), d)
        layer = torch.nn.TransformerEncoderLayer(d, int(c["heads"]), int(c["ff"]), float(c["dropout"]),
                                                 batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, int(c["layers"]), enable_nested_tensor=False)
        self.head = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(), torch.nn.Linear(d, 1))

    def forward(self, kind: torch.Tensor, decision: torch.Tensor, attr: torch.Tensor, counts: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        b, t = kind.shape
        steps = (self.kind(kind) + self.decision_proj(self.decision(decision).reshape(b, t, -1))
                 + self.attr_proj(self.attr(attr).reshape(b, t, -1))
                 + self.counts(counts[..., 0]) + self.counts(counts[..., 1] + MAX_COUNT + 1)
                 + self.position(torch.arange(t, device=kind.device))[None])
        h = self.encoder(steps, src_key_padding_mask=mask)
        keep = (~mask).unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(1) / keep.sum(1)
        return self.head(pooled).squeeze(-1)


@register_model("tlp")
class TLPModel(CostModel):
    """`create_model("tlp", d_model=64, layers=2, heads=4, max_len=256, epochs=30, lr=1e-3, seed=0)`."""

    defaults = DEFAULTS
    inputs: ClassVar[frozenset[str]] = frozenset({"actions"})
    option_ranges: ClassVar[dict[str, tuple]] = {
        "d_model": (1, None, "[]"), "layers": (1, None, "[]"), "heads": (1, None, "[]"), "ff": (1, None, "[]"),
        "dropout": (0, 1, "[)"), "max_len": (1, None, "[]"), "decision_width": (1, None, "[]"),
        "attr_width": (0, None, "[]"), "attr_buckets": (1, None, "[]"),
        "epochs": (0, None, "[]"), "lr": (0, None, "()"), "tasks_per_batch": (1, None, "[]"),
        "group_size": (2, None, "[]")}
    fine_tune_options: ClassVar[frozenset[str]] = frozenset(
        {"epochs", "lr", "tasks_per_batch", "group_size", "seed", "device", "dropout"})

    def __init__(self, **config: Any):
        super().__init__(**config)
        self.kinds: dict[str, int] = {}
        self.net: TLPNet | None = None

    @property
    def is_fitted(self) -> bool:
        return self.net is not None

    def _build(self) -> TLPNet:
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(int(self.config["seed"]))
            net = TLPNet(len(self.kinds) + 2, self.config)
        return net.to(self.config["device"])

    def tokenize(self, records: Records) -> Tokens:
        return Tokens(records.actions(), self.kinds, self.config)

    def fit(self, train: Records, progress: bool = True) -> None:
        if int(self.config["epochs"]) < 1:
            raise ValueError(f"{self.name}: epochs must be >= 1 to train from scratch (0 only when fine-tuning)")
        sequences = train.actions()
        names = sorted({a["kind"] for actions in sequences for a in actions})
        self.kinds = {k: i + 2 for i, k in enumerate(names)}
        self.net = self._build()
        self._train(train, sequences, progress)

    def fine_tune(self, train: Records, progress: bool = True) -> None:
        """Continue LambdaRank training from the loaded weights (config `epochs` and `lr`: pass fewer or
        lower with `--config`). Action kinds the checkpoint never saw (another target's primitives, e.g.
        thread binding on a GPU) get new embedding rows instead of all collapsing into <unk>."""
        if self.net is None:
            raise RuntimeError("tlp: fine_tune() needs a fitted model; load_weights() or fit() first")
        sequences = train.actions()
        self._add_kinds({a["kind"] for actions in sequences for a in actions})
        self._train(train, sequences, progress)

    def _add_kinds(self, names: set[str]) -> None:
        """Append unseen kinds to the vocabulary; learned embedding rows keep their ids, new rows get a
        seeded init. Ids stay contiguous, so the saved vocabulary (ordered by id) reloads as is."""
        assert self.net is not None
        new = sorted(set(names) - self.kinds.keys())
        if not new:
            return
        for kind in new:
            self.kinds[kind] = len(self.kinds) + 2
        old = self.net.kind
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.config["seed"]))
            grown = torch.nn.Embedding(len(self.kinds) + 2, old.embedding_dim, padding_idx=PAD)
        with torch.no_grad():
            grown.weight[:old.num_embeddings] = old.weight
        self.net.kind = grown.to(old.weight.device)

    def _train(self, train: Records, sequences: list[list[dict]], progress: bool) -> None:
        assert self.net is not None
        tokens, net, device = Tokens(sequences, self.kinds, self.config), self.net, self.config["device"]
        c = self.config
        fit_ranker(net, lambda rows: net(*tokens.batch(rows, device)), train.latency(), train.task_ids(),
                   epochs=int(c["epochs"]), lr=float(c["lr"]), group_size=int(c["group_size"]),
                   tasks_per_batch=int(c["tasks_per_batch"]), seed=int(c["seed"]), progress=progress)

    @torch.no_grad()
    def score(self, records: Records, batch_size: int = 256) -> np.ndarray:
        if self.net is None:
            raise RuntimeError("tlp: call fit() or load_weights() before score()")
        self.net.eval()
        tokens = self.tokenize(records)
        # Similar lengths together, so a batch pads little; scores are put back in record order
        order = np.argsort(tokens.length, kind="stable")
        out = np.zeros(len(records), np.float64)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            out[rows] = self.net(*tokens.batch(rows, self.config["device"])).float().cpu().numpy()
        return out

    def save_weights(self, folder: str) -> None:
        if self.net is None:
            raise RuntimeError("tlp: nothing to save; fit() first")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
                  os.path.join(folder, WEIGHTS_FILE))
        with open(os.path.join(folder, VOCAB_FILE), "w") as handle:
            json.dump({"kinds": sorted(self.kinds, key=self.kinds.__getitem__), "pad": PAD, "unk": UNK},
                      handle, indent=1)

    def load_weights(self, folder: str) -> None:
        with open(os.path.join(folder, VOCAB_FILE)) as handle:
            self.kinds = {k: i + 2 for i, k in enumerate(json.load(handle)["kinds"])}
        self.net = self._build()
        self.net.load_state_dict(load_file(os.path.join(folder, WEIGHTS_FILE)))
        self.net.eval()
