"""The rules rows must follow beyond their types: what `DatasetStore` refuses to write
(InvalidRowsError), and what `cwm-bench validate` and `cwm-bench release` check in every shard.

- records (`record_problems`): a valid status, a latency exactly on ok rows, and on those a positive
  latency that is the median of their timings, the protocol's number of timings, and their features;
  the protocol's counts and fractions in range (`protocol_problems`);
- workloads (`workload_problems`): an id, finite non-negative flops, network weights >= 1.
"""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.compute as pc

from cwm_bench.rows.schema import STATUSES

_PROTOCOL_RANGES = {  # protocol JSON key -> (lowest, highest, lowest excluded)
    "rounds": (1, None, False), "repeats_per_round": (1, None, False), "repeats": (1, None, False),
    "warmup_runs": (0, None, False), "warmup": (0, None, False), "min_repeat_ms": (0, None, False),
    "number": (1, None, False), "check_fraction": (0, 1, False), "timeout_s": (0, None, True),
    "timeout": (0, None, True), "max_round_s": (0, None, True),
}


def protocol_problems(protocol_json: str | None) -> list[str]:
    """What is out of range in a record's measurement protocol (JSON); [] when it is fine."""
    try:
        protocol = json.loads(protocol_json) if protocol_json is not None else None
    except ValueError:
        return ["protocol is not JSON"]
    if not isinstance(protocol, dict):
        return ["protocol is not a JSON object"]
    problems = []
    for key, (low, high, open_low) in _PROTOCOL_RANGES.items():
        if key not in protocol:
            continue
        value = protocol[key]
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) \
                or value < low or (open_low and value == low) or (high is not None and value > high):
            bound = f"{'>' if open_low else '>='} {low}" + (f" and <= {high}" if high is not None else "")
            problems.append(f"protocol {key} is {value!r}, must be {bound}")
    return problems


def _timings_range(protocol_json: str | None) -> tuple[int, int] | None:
    """(fewest, most) timings an ok record of this protocol has: at least one per round, at most
    rounds x repeats; None when the protocol does not say (imported records)."""
    try:
        protocol = json.loads(protocol_json or "")
    except ValueError:
        return None
    if not isinstance(protocol, dict):
        return None
    rounds, repeats = protocol.get("rounds"), protocol.get("repeats_per_round", protocol.get("repeats"))
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (rounds, repeats)):
        return None
    return rounds, rounds * repeats


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def record_problems(data: pa.Table) -> list[tuple[int, str]]:
    """(row, problem) for every records row that breaks the rules beyond its types:

    - `status` is one of STATUSES; `latency_s` is set exactly on ok rows;
    - an ok row has a positive, finite `latency_s` equal to the median of its timings, between one
      timing per round and rounds x repeats of them (when its protocol says), all positive and finite,
      and its per-store `features`;
    - the protocol's counts and fractions are in range; `design_space` >= -1; `hw_num_cores` >= 0.
    """
    names = set(data.column_names)
    n = data.num_rows
    col = {c: data.column(c).to_pylist() if c in names else [None] * n
           for c in ("status", "latency_s", "latencies_s", "protocol", "design_space", "hw_num_cores")}
    if "features" in names:
        features = data.column("features")
        has_features = pc.fill_null(pc.greater(pc.list_value_length(features), 0), False).to_pylist()
    else:
        has_features = [False] * n
    protocols: dict[str | None, tuple[list[str], tuple[int, int] | None]] = {}
    problems = []
    for i in range(n):
        status, latency, timings = col["status"][i], col["latency_s"][i], col["latencies_s"][i]
        if status not in STATUSES:
            problems.append((i, f"invalid status {status!r}; valid: {STATUSES}"))
        proto = col["protocol"][i]
        if proto not in protocols:
            protocols[proto] = (protocol_problems(proto), _timings_range(proto))
        bad_protocol, timing_range = protocols[proto]
        problems.extend((i, p) for p in bad_protocol)
        if status == "ok":
            if latency is None or not math.isfinite(latency) or latency <= 0:
                problems.append((i, f"status ok but latency_s is {latency!r} (must be positive)"))
            if not timings:
                problems.append((i, "status ok but no timings in latencies_s"))
            elif not all(t is not None and math.isfinite(t) and t > 0 for t in timings):
                problems.append((i, "latencies_s holds a timing that is not positive and finite"))
            else:
                if latency is not None and math.isfinite(latency) \
                        and not math.isclose(latency, _median(timings), rel_tol=1e-9, abs_tol=0.0):
                    problems.append((i, f"latency_s {latency!r} is not the median of latencies_s"))
                if timing_range and not timing_range[0] <= len(timings) <= timing_range[1]:
                    problems.append((i, f"{len(timings)} timings; the protocol gives {timing_range[0]} to "
                                        f"{timing_range[1]}"))
            if not has_features[i]:
                problems.append((i, "status ok but no features"))
        elif latency is not None:
            problems.append((i, f"status {status} but latency_s is set ({latency!r})"))
        ds, cores = col["design_space"][i], col["hw_num_cores"][i]
        if ds is not None and ds < -1:
            problems.append((i, f"design_space {ds} (must be >= -1)"))
        if cores is not None and cores < 0:
            problems.append((i, f"hw_num_cores {cores} (must be >= 0)"))
    return problems


def workload_problems(data: pa.Table) -> list[tuple[int, str]]:
    """(row, problem) for workloads rows: an id, finite non-negative flops, network weights >= 1."""
    names = set(data.column_names)
    n = data.num_rows
    ids = data.column("workload_id").to_pylist() if "workload_id" in names else [None] * n
    flops = data.column("flops").to_pylist() if "flops" in names else [None] * n
    networks = data.column("networks").to_pylist() if "networks" in names else [None] * n
    problems = []
    for i in range(n):
        if not ids[i]:
            problems.append((i, "no workload_id"))
        if flops[i] is not None and (not math.isfinite(flops[i]) or flops[i] < 0):
            problems.append((i, f"flops {flops[i]!r} (must be finite and >= 0)"))
        for use in networks[i] or []:
            if use.get("weight") is None or use["weight"] < 1:
                problems.append((i, f"network {use.get('network')!r} has weight {use.get('weight')!r} (must be >= 1)"))
    return problems


def table_problems(table: str, data: pa.Table) -> list[tuple[int, str]]:
    if table == "records":
        return record_problems(data)
    if table == "workloads":
        return workload_problems(data)
    return []
