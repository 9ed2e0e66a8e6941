"""What --model / --baselines accept, and what they refuse in one line."""

from __future__ import annotations

import pytest

from cwm_bench.tuning.contenders import ContenderError, parse_contender

WORLD_MODEL = "reference_model/checkpoints/cpu-v0-by_network-seed0"


def test_baselines_checkpoints_and_registered_names():
    assert parse_contender("ansor").kind == "tvm-xgb"
    assert parse_contender("rnd=random").label == "rnd"
    wm = parse_contender(WORLD_MODEL)
    assert wm.kind == "checkpoint" and wm.label == "world-model" and not wm.online
    # the committed checkpoint was trained on the Intel release, whose by_network test tasks it never saw
    assert wm.trained_on and wm.trained_on[0]["hw_arch"] == "emeraldrapids"
    from cwm_bench.tuning.tasks import resolve_workloads

    held_out = resolve_workloads(["datasets/cwm-bench-cpu-v0:by_network"])
    trained = resolve_workloads(["datasets/cwm-bench-cpu-v0"])
    assert not any(wm.seen(w.workload_id) for w in held_out)
    assert sum(wm.seen(w.workload_id) for w in trained) == len(trained) - len(held_out)
    online = parse_contender("tenset-mlp")
    assert online.kind == "registered" and online.online


def test_refusals_name_the_problem():
    with pytest.raises(ContenderError, match="needs --pretrained"):
        parse_contender("ansor-pretrained")
    with pytest.raises(ContenderError, match="not an ansor-xgb checkpoint"):
        parse_contender("ansor-pretrained", pretrained=WORLD_MODEL)
    with pytest.raises(ContenderError, match="not a baseline"):
        parse_contender("no-such-model")
