"""Schedule traces as data: plain JSON (replayable) and a structured action sequence.

A MetaSchedule trace is `[instructions, decisions]`, each instruction `[kind, inputs, attrs, outputs]`
and each decision `[instruction_index, value]`. Its JSON holds TVM objects (IntImm, FloatImm, String);
`to_plain` turns them into Python values so the trace can live in Parquet and be replayed later.
"""

from __future__ import annotations

import json
from typing import Any


def to_plain(obj: Any) -> Any:
    """Recursively convert TVM FFI containers/immediates into JSON-ready Python values."""
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    if isinstance(obj, str):
        return str(obj)
    if hasattr(obj, "value") and type(obj).__name__ in ("IntImm", "FloatImm", "Bool"):
        return obj.value
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple) or hasattr(obj, "__len__"):
        return [to_plain(x) for x in obj]
    raise TypeError(f"cannot convert {type(obj).__name__} in a trace to JSON")


def trace_to_json(trace) -> str:
    """A compact, replayable JSON string for a `tvm.s_tir.Trace`."""
    return json.dumps(to_plain(trace.as_json()), separators=(",", ":"))


def replay_trace(trace_json: str, mod, seed: int = 1):
    """Apply a stored trace to a fresh schedule of `mod`; returns the schedule."""
    from tvm.s_tir import Schedule, Trace

    sch = Schedule(mod, seed=seed)
    Trace.apply_json_to_schedule(json.loads(trace_json), sch)
    return sch


def _decision_ints(value: Any) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [int(v) for v in value]
    return [int(value)]


def actions_from_trace_json(trace_json: str) -> list[dict[str, Any]]:
    """The structured action sequence: one dict per instruction, in program order.

    kind: instruction name (Split, Reorder, SamplePerfectTile, ...); inputs/outputs: SSA names
    (`b` blocks, `l` loops, `v` variables) or JSON literals; attrs: JSON string; decision: the sampled
    integers (tile factors, categorical index, compute location) or None.
    """
    insts, decisions = json.loads(trace_json)
    decision_of = {int(index): value for index, value in decisions}
    actions = []
    for index, (kind, inputs, attrs, outputs) in enumerate(insts):
        actions.append({
            "kind": kind,
            "inputs": [x if isinstance(x, str) else json.dumps(x) for x in inputs],
            "attrs": json.dumps(attrs, separators=(",", ":")),
            "outputs": [str(x) for x in outputs],
            "decision": _decision_ints(decision_of.get(index)),
        })
    return actions
