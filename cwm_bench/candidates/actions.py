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


_DECISION = "decision="
# An Annotate value is TVM's only untyped instruction input, and its Python text hides the type
# (1, 1.0 and True all print as 1; the JSON says 1, 1.0, true): such lines are keyed by the type too.
_ANNOTATE = "sch.annotate("
_ANN_VAL = "ann_val="


def _parse_decision(text: str) -> list[int] | None:
    """A decision as printed by TVM (`3`, `[1, 7, 2]`) in `_decision_ints`' form; ValueError if not one."""
    if text.startswith("[") and text.endswith("]"):
        body = text[1:-1]
        return [int(x) for x in body.split(",")] if body.strip() else []
    return [int(text)]


def _split_decision(line: str) -> tuple[str, list[int] | None]:
    """(the line without its decision, the decision). TVM prints the decision as the call's last
    keyword (PythonAPICall::Decision); a line without one readable is its own key, with no decision."""
    at = line.rfind(_DECISION)
    if at < 1 or line[at - 1] not in " (" or not line.endswith(")"):
        return line, None
    try:
        return line[:at], _parse_decision(line[at + len(_DECISION):-1])
    except ValueError:
        return line, None


class ActionCache:
    """`actions_from_trace_json(trace_to_json(trace))` from `trace.as_python()`, ~6x cheaper once warm.

    `as_python()` prints one line per instruction; without its decision a line fixes the instruction's
    kind, inputs, attrs and outputs (every input and attr is printed, strings quoted, floats with 17
    digits, SSA names numbered as in the JSON), so those are cached by that text and only decisions are
    read per trace. A trace with any unseen line takes the slow path once and teaches the cache its
    lines. Results are fresh dicts whose `inputs`/`outputs` lists are shared with the cache: callers
    must not mutate them. Bounded: cleared before it would hold more than `max_lines` lines.
    """

    def __init__(self, max_lines: int = 100_000):
        self.max_lines = max_lines
        self.hits = 0  # traces answered from the cache
        self.misses = 0  # traces that took the slow path
        self._templates: dict[str, tuple[str, list[str], str, list[str]]] = {}

    def __len__(self) -> int:
        return len(self._templates)

    def actions_of(self, trace) -> list[dict[str, Any]]:
        """The action sequence of a `tvm.s_tir.Trace`, equal to the slow path's."""
        lines = [str(line) for line in trace.as_python()]
        keys = self._keys(trace, lines)
        templates = self._templates
        actions = []
        for key, decision in keys:
            template = templates.get(key)
            if template is None:
                return self._learn(trace, keys)
            kind, inputs, attrs, outputs = template
            actions.append({"kind": kind, "inputs": inputs, "attrs": attrs, "outputs": outputs,
                            "decision": decision})
        self.hits += 1
        return actions

    @staticmethod
    def _keys(trace, lines: list[str]) -> list[tuple[str | None, list[int] | None]]:
        """Each line's cache key (None: not cacheable) and decision."""
        keys: list[tuple[str | None, list[int] | None]] = [_split_decision(line) for line in lines]
        insts = None
        for i, (key, decision) in enumerate(keys):
            at = key.rfind(_ANN_VAL) if key.startswith(_ANNOTATE) else -1
            first = key[at + len(_ANN_VAL):at + len(_ANN_VAL) + 1] if at >= 0 else ""
            if first in ("[", "{"):  # a container could mix types: not worth caching
                keys[i] = (None, decision)
            elif first and first in "-.0123456789":
                insts = trace.insts if insts is None else insts
                value_type = type(insts[i].inputs[1]).__name__ if i < len(insts) else None
                keys[i] = (value_type and f"{key}#{value_type}", decision)
        return keys

    def _learn(self, trace, keys: list[tuple[str | None, list[int] | None]]) -> list[dict[str, Any]]:
        self.misses += 1
        actions = actions_from_trace_json(trace_to_json(trace))
        if len(actions) != len(keys):
            return actions
        if len(self._templates) + len(keys) > self.max_lines:
            self._templates.clear()
        for (key, decision), action in zip(keys, actions, strict=True):
            # A line is cached only when its printed decision reads back as the JSON's; copies, so the
            # caller may keep (and change) what this call returns.
            if key is not None and decision == action["decision"]:
                self._templates[key] = (action["kind"], list(action["inputs"]), action["attrs"],
                                        list(action["outputs"]))
        return actions
