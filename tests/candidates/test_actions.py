"""The structured action sequence derived from a trace."""

from __future__ import annotations

import json

from cwm_bench.candidates.actions import actions_from_trace_json


def test_actions_mirror_trace_instructions_and_decisions(generator):
    c = generator.random(1)[0]
    insts, decisions = json.loads(c.trace_json)
    actions = actions_from_trace_json(c.trace_json)
    assert [a["kind"] for a in actions] == [i[0] for i in insts]
    decided = {i for i, _ in decisions}
    for index, action in enumerate(actions):
        assert (action["decision"] is not None) == (index in decided)
        json.loads(action["attrs"])
    tiles = [a for a in actions if a["kind"] == "SamplePerfectTile"]
    assert tiles, "a matmul schedule samples tile sizes"
    for t in tiles:  # a perfect tiling multiplies back to the loop extent (64)
        assert int(__import__("math").prod(t["decision"])) == 64


def test_hand_made_trace():
    trace = json.dumps([[["GetSBlock", [], ["C", "main"], ["b0"]],
                         ["SampleCategorical", [], [[0, 16], [0.5, 0.5]], ["v1"]],
                         ["Annotate", ["b0", "v1"], ["meta_schedule.unroll_explicit"], []]],
                        [[1, 1]]])
    actions = actions_from_trace_json(trace)
    assert actions[0] == {"kind": "GetSBlock", "inputs": [], "attrs": '["C","main"]', "outputs": ["b0"],
                          "decision": None}
    assert actions[1]["decision"] == [1]
    assert actions[2]["inputs"] == ["b0", "v1"]
