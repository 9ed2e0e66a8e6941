"""Operand addressing: actions rolled over the initial program follow the real schedule's loops."""

from __future__ import annotations

import math
import os

import pytest

from cwm_bench.model import load_side
from cwm_bench.reference_model.program import Block, Program, program_of
from cwm_bench.reference_model.trace_state import ROOT, roll

DATASETS = os.path.join(os.path.dirname(__file__), "..", "..", "datasets")


@pytest.mark.parametrize(("release", "every"), [("cwm-bench-cpu-v0", 40), ("cwm-bench-h200-v0", 10)])
def test_tile_factors_of_every_followed_loop_multiply_to_its_extent(release, every):
    """A strong check of GetLoops/Split/Fuse tracking: MetaSchedule's perfect tiles multiply to the
    extent of the loop they tile, so a loop we followed wrongly would show a wrong extent."""
    side = load_side(os.path.join(DATASETS, release), "all", "all", {"actions"})
    mods = dict(zip(*(side.records.workloads.column(c).to_pylist() for c in ("workload_id", "mod_json")), strict=True))
    tasks, actions = side.task_ids, side.records.actions()
    tiles = resolved = steps = 0
    for i in range(0, len(actions), every):
        for step in roll(program_of(mods[tasks[i]]), actions[i]):
            steps += 1
            resolved += step.resolved
            if step.kind == "SamplePerfectTile" and step.loop_extent:
                tiles += 1
                assert round(math.prod(2 ** f for f in step.factors)) == step.loop_extent, (tasks[i], step)
    assert tiles > 1000 and resolved / steps > 0.8


def test_a_hand_written_trace():
    program = Program((Block("C", (64, 32, 16), ("S", "S", "R"), 2, 1),))
    actions = [
        {"kind": "GetSBlock", "inputs": [], "attrs": '["C","main"]', "outputs": ["b0"], "decision": None},
        {"kind": "GetLoops", "inputs": ["b0"], "attrs": "[]", "outputs": ["l1", "l2", "l3"], "decision": None},
        {"kind": "SamplePerfectTile", "inputs": ["l1"], "attrs": "[2,64]", "outputs": ["v4", "v5"], "decision": [8, 8]},
        {"kind": "Split", "inputs": ["l1", "v4", "v5"], "attrs": "[true,false]", "outputs": ["l6", "l7"],
         "decision": None},
        {"kind": "Reorder", "inputs": ["l6", "l2", "l7"], "attrs": "[]", "outputs": [], "decision": None},
        {"kind": "Fuse", "inputs": ["l6", "l2"], "attrs": "[1]", "outputs": ["l8"], "decision": None},
        {"kind": "Parallel", "inputs": ["l8"], "attrs": "[]", "outputs": [], "decision": None},
        {"kind": "Vectorize", "inputs": ["l3"], "attrs": "[]", "outputs": [], "decision": None},
        {"kind": "GetSBlock", "inputs": [], "attrs": '["root","main"]', "outputs": ["b9"], "decision": None},
        {"kind": "SampleCategorical", "inputs": [], "attrs": "[[0,16,64],[0.3,0.3,0.4]]", "outputs": ["v10"],
         "decision": [2]},
        {"kind": "Annotate", "inputs": ["b9", "v10"], "attrs": '["meta_schedule.unroll_explicit"]', "outputs": [],
         "decision": None},
    ]
    steps = roll(program, actions)
    assert all(s.resolved for s in steps)
    tile = steps[2]
    assert (tile.block, tile.loop_extent, tile.loop_kind, tile.loop_axis) == (0, 64, "S", 0)
    assert tile.factors[:2] == (3.0, 3.0) and tile.fractions[:2] == (8 / 64, 8 / 64)
    fused = steps[6]  # Parallel on l6 * l2 = 8 * 32, first in the nest after the reorder
    assert (fused.loop_extent, fused.loop_depth, fused.loop_kind) == (256, 0, "S")
    assert (steps[7].loop_extent, steps[7].loop_kind, steps[7].loop_depth) == (16, "R", 2)
    assert steps[8].block == ROOT and steps[9].value == math.log2(65) and steps[10].value == math.log2(65)
