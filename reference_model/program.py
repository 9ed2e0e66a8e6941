"""The initial program of a task, as the world model's state encoder reads it: its blocks, and per
block its loop nest (extent and kind of every loop, in nest order) and its buffer accesses.

Read once per task from the workloads table's `mod_json` (no code of a candidate is ever read:
candidates are the initial program plus their actions, `reference_model/trace_state.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

# TVM IterVar.iter_type: 0 data-parallel, 2 reduction (others are rare in initial programs)
_KINDS = {0: "S", 2: "R"}


@dataclass(frozen=True)
class Block:
    name: str
    extents: tuple[int, ...]  # the block's loops, outermost first
    kinds: tuple[str, ...]  # "S" spatial, "R" reduction, "?" other, per loop
    reads: int  # buffers read
    writes: int  # buffers written

    @property
    def iterations(self) -> int:
        total = 1
        for extent in self.extents:
            total *= extent
        return total


@dataclass(frozen=True)
class Program:
    blocks: tuple[Block, ...]

    def index(self, name: str) -> int | None:
        """The position of the block called `name` (None: not a block of the initial program)."""
        for i, block in enumerate(self.blocks):
            if block.name == name:
                return i
        return None


@lru_cache(maxsize=512)
def program_of(mod_json: str) -> Program:
    """The blocks of a workload's `mod_json` (`tvm.ir.save_json` of its IRModule), in program order."""
    import tvm
    from tvm import s_tir

    sch = s_tir.Schedule(tvm.ir.load_json(mod_json))
    blocks = []
    for rv in sch.get_child_blocks(sch.get_sblock("root")):
        block = sch.get(rv)
        loops = [sch.get(loop) for loop in sch.get_loops(rv)]
        # Loops of an initial TE program map one to one to the block's iter vars.
        kinds = [_KINDS.get(int(iv.iter_type), "?") for iv in block.iter_vars]
        if len(kinds) != len(loops):
            kinds = ["?"] * len(loops)
        blocks.append(Block(block.name_hint, tuple(int(loop.extent) for loop in loops), tuple(kinds),
                            len(block.reads), len(block.writes)))
    return Program(tuple(blocks))
