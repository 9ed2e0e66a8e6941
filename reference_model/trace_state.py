"""Operand addressing: roll a candidate's actions over its task's initial program, symbolically.

A trace names its operands by SSA names (`b1` a block, `l8` a loop, `v15` a sampled value). This
module follows them without TVM, the way the schedule would: `GetSBlock` finds a block of the
initial program by name, `GetLoops` its current loops, `Split` replaces a loop by loops whose
extents are the sampled factors, `Fuse` multiplies extents, `Reorder` permutes a block's loops.
Each action becomes a `Step`: the block slot it touches, the loop it touches (extent, kind, which
original axis it came from, its position in the block's nest) and its decision as numbers (tile
factors as log2 and as fractions of the loop extent, categorical picks as the picked value).
The world model's transition network consumes these steps; no program is re-built or re-encoded.

What cannot be followed exactly (a block a transformation creates, loops after `ComputeAt`) gets a
fresh slot marked derived, so every operand resolves; `Step.resolved` says whether it was exact.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache

from cwm_bench.reference_model.program import Program

ROOT = -2  # the block slot of the root block (derived blocks are -1)
MAX_FACTORS = 5  # tile factors kept per step: MetaSchedule tiles a loop into up to 4 (CPU) or 5 (GPU) levels


@dataclass
class _Loop:
    extent: int  # 0 when unknown
    kind: str  # "S", "R" or "?"
    axis: int  # the original axis of its block it came from, -1 unknown


@dataclass
class _Block:
    origin: int  # index in the initial program, -1 for a derived block
    loops: list[int] = field(default_factory=list)  # loop ids, outermost first
    inlined: bool = False


@dataclass(frozen=True)
class Step:
    kind: str
    block: int  # block slot: its index in the initial program; the root block ROOT; derived blocks -1
    loop_extent: int  # the loop operand's extent (0: none or unknown)
    loop_kind: str  # "S", "R", "?" or "" (no loop operand)
    loop_axis: int  # original axis of the loop operand, -1 none
    loop_depth: int  # the loop operand's position in its block's nest, -1 none
    factors: tuple[float, ...]  # log2 of the tile factors (SamplePerfectTile, Split), padded with 0
    fractions: tuple[float, ...]  # the factors / the loop's extent, padded with 0
    value: float  # log2(1 + picked value) of SampleCategorical / Annotate / SampleComputeLocation; else 0
    resolved: bool  # every operand followed exactly


def _log2(x: float) -> float:
    return math.log2(x) if x > 0 else 0.0


def _pad(values: list[float]) -> tuple[float, ...]:
    return tuple((values + [0.0] * MAX_FACTORS)[:MAX_FACTORS])


class TraceState:
    """The symbolic state after some actions of one candidate; `step(action)` advances it."""

    def __init__(self, program: Program):
        self.program = program
        self.loops: list[_Loop] = []
        self.blocks: list[_Block] = []
        self.owner_of: dict[int, int] = {}  # loop id -> index of the block whose nest holds it
        for i, block in enumerate(program.blocks):
            ids = [self._new_loop(e, k, a) for a, (e, k) in enumerate(zip(block.extents, block.kinds, strict=True))]
            self.blocks.append(_Block(i, ids))
            self.owner_of.update(dict.fromkeys(ids, i))
        self.root = len(self.blocks)
        self.blocks.append(_Block(ROOT))  # "root": where parallel/vectorize/unroll annotations go
        self.vars: dict[str, tuple[str, int]] = {}  # SSA name -> ("block", id) | ("loop", id) | ("int", value)

    def _new_loop(self, extent: int, kind: str, axis: int) -> int:
        self.loops.append(_Loop(extent, kind, axis))
        return len(self.loops) - 1

    def _new_block(self) -> int:
        self.blocks.append(_Block(-1))
        return len(self.blocks) - 1

    def _get(self, name: str, kind: str) -> int | None:
        bound = self.vars.get(name)
        return bound[1] if bound and bound[0] == kind else None

    def _owner(self, loop: int) -> _Block | None:
        index = self.owner_of.get(loop)
        return self.blocks[index] if index is not None else None

    def step(self, action: dict) -> Step:
        kind, inputs, outputs = action["kind"], list(action["inputs"] or []), list(action["outputs"] or [])
        attrs = _attrs(action["attrs"]) if action["attrs"] else []
        decision = list(action["decision"] or [])
        resolved = True
        block = next((self._get(n, "block") for n in inputs if self._get(n, "block") is not None), None)
        loop = next((self._get(n, "loop") for n in inputs if self._get(n, "loop") is not None), None)
        factors: list[float] = []
        value = 0.0

        if kind == "GetSBlock":
            name = str(attrs[0]) if attrs else ""
            index = self.root if name == "root" else self.program.index(name)
            block = index if index is not None else self._new_block()
            resolved = index is not None
            for name in outputs:
                self.vars[name] = ("block", block)
        elif kind == "GetLoops" and block is not None:
            ids = self.blocks[block].loops
            if len(ids) != len(outputs):  # a nest we did not follow (after compute-at, ...): fresh loops
                ids = [self._new_loop(0, "?", -1) for _ in outputs]
                for old in self.blocks[block].loops:
                    self.owner_of.pop(old, None)
                self.owner_of.update(dict.fromkeys(ids, block))
                self.blocks[block].loops, resolved = ids, False
            for name, i in zip(outputs, ids, strict=True):
                self.vars[name] = ("loop", i)
        elif kind == "SamplePerfectTile":
            factors = [float(d) for d in decision]
            for name, d in zip(outputs, decision, strict=False):
                self.vars[name] = ("int", int(d))
        elif kind == "Split" and loop is not None:
            values = [self._get(n, "int") for n in inputs[1:]]
            extent = self.loops[loop].extent
            known = math.prod(v for v in values if v)
            if None in values and extent and known:  # one inferred factor: what the others leave
                values = [v if v is not None else max(1, extent // known) for v in values]
            factors = [float(v or 0) for v in values]
            new = [self._new_loop(int(v or 0), self.loops[loop].kind, self.loops[loop].axis) for v in values]
            self._replace(loop, new)
            for name, i in zip(outputs, new, strict=True):
                self.vars[name] = ("loop", i)
        elif kind == "Fuse":
            fused = [i for i in (self._get(n, "loop") for n in inputs) if i is not None]
            extents = [self.loops[i].extent for i in fused]
            kinds = {self.loops[i].kind for i in fused}
            new = self._new_loop(math.prod(extents) if all(extents) else 0, kinds.pop() if len(kinds) == 1 else "?",
                                 self.loops[fused[0]].axis if fused else -1)
            if fused:
                self._replace(fused[0], [new])
                for i in fused[1:]:
                    self._replace(i, [])
            for name in outputs:
                self.vars[name] = ("loop", new)
        elif kind == "Reorder":
            order = [i for i in (self._get(n, "loop") for n in inputs) if i is not None]
            owner = self._owner(order[0]) if order else None
            if owner is not None and all(i in owner.loops for i in order):
                slots = sorted(owner.loops.index(i) for i in order)
                for slot, i in zip(slots, order, strict=True):
                    owner.loops[slot] = i
            else:
                resolved = False
        elif kind == "SampleCategorical":
            choices = attrs[0] if attrs and isinstance(attrs[0], list) else []
            picked = choices[decision[0]] if decision and decision[0] < len(choices) else (decision or [0])[0]
            value = _log2(1 + float(picked))
            for name in outputs:
                self.vars[name] = ("int", int(picked))
        elif kind in ("ComputeInline", "ReverseComputeInline") and block is not None:
            self.blocks[block].inlined = True
        elif kind == "Annotate":
            annotated = self._get(inputs[1], "int") if len(inputs) > 1 else None
            literal = inputs[1].strip('"') if len(inputs) > 1 else ""
            value = _log2(1 + annotated) if annotated is not None else (
                _log2(1 + float(literal)) if literal.isdigit() else 0.0)
        elif kind == "SampleComputeLocation":
            value = float(decision[0]) if decision else 0.0  # -1 root, -2 inline, else a loop index
            for name in outputs:
                self.vars[name] = ("loop", self._new_loop(0, "?", -1))
        else:
            # blocks and loops a transformation creates (CacheRead/Write, RFactor, GetConsumers,
            # DecomposeReduction, GetChildBlocks, ...): fresh derived slots
            for name in outputs:
                if name.startswith("b"):
                    self.vars[name] = ("block", self._new_block())
                elif name.startswith("l"):
                    self.vars[name] = ("loop", self._new_loop(0, "?", -1))
                elif name.startswith("v"):
                    self.vars[name] = ("int", int(decision[0]) if decision else 0)
            resolved = not outputs

        if loop is None and kind == "SamplePerfectTile":
            resolved = False
        info = self.loops[loop] if loop is not None else None
        owner = self._owner(loop) if loop is not None else None
        extent = info.extent if info else 0
        return Step(kind=kind,
                    block=(self.blocks[block].origin if block is not None else
                           (owner.origin if owner is not None else -1)),
                    loop_extent=extent, loop_kind=info.kind if info else "", loop_axis=info.axis if info else -1,
                    loop_depth=owner.loops.index(loop) if owner is not None else -1,
                    factors=_pad([_log2(f) for f in factors]),
                    fractions=_pad([f / extent for f in factors] if extent else []),
                    value=value, resolved=resolved)

    def _replace(self, loop: int, new: list[int]) -> None:
        index = self.owner_of.pop(loop, None)
        if index is not None:
            owner = self.blocks[index]
            at = owner.loops.index(loop)
            owner.loops[at:at + 1] = new
            self.owner_of.update(dict.fromkeys(new, index))


@lru_cache(maxsize=65536)
def _attrs(text: str) -> list:
    """Parsed instruction attributes; candidates of a task repeat the same few texts. Read-only."""
    return json.loads(text)


def roll(program: Program, actions: list[dict]) -> list[Step]:
    """Every action of a candidate as a `Step`, in order."""
    state = TraceState(program)
    return [state.step(a) for a in actions]
