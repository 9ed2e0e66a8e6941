"""Everything a data card says, read from a release folder (pure reading, plain JSON-able values)."""

from __future__ import annotations

import glob
import json
import os
import statistics

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cwm_bench.rows.reader import read_table
from cwm_bench.splits import SPLIT_COLUMNS, SPLIT_SCHEMES

CONFIGS = ("records", "workloads", "noise")
_STAT_COLUMNS = ["workload_id", "hw_id", "hw_kind", "hw_name", "hw_arch", "hw_num_cores", "hw_isa", "hw_descriptor",
                 "status",
                 "origin", "latency_s", "protocol", "target", "measured_at", "collector_version", "tvm_version",
                 *SPLIT_COLUMNS.values()]
# Arrow type names that differ from the `datasets` dtype names.
_DTYPES = {"float": "float32", "double": "float64", "halffloat": "float16", "date32[day]": "date32",
           "date64[ms]": "date64"}


def hf_features(schema: pa.Schema) -> list[dict]:
    """The `dataset_info.features` YAML list that `datasets` writes for this Arrow schema."""
    return _feature(pa.struct(list(schema)))["struct"]


def _feature(t: pa.DataType) -> dict:
    if pa.types.is_struct(t):
        return {"struct": [{"name": f.name, **_feature(f.type)} for f in t]}
    if pa.types.is_fixed_size_list(t):
        return {"list": _simplify(_feature(t.value_type)), "length": t.list_size}
    if pa.types.is_large_list(t):
        return {"large_list": _simplify(_feature(t.value_type))}
    if pa.types.is_list(t):
        return {"list": _simplify(_feature(t.value_type))}
    return {"dtype": _DTYPES.get(str(t), str(t))}


def _type_name(t: pa.DataType) -> str:
    """Arrow type, short: list<struct<kind, inputs>>, list<fixed_size_list<float32, 164>>."""
    if pa.types.is_struct(t):
        return f"struct<{', '.join(f.name for f in t)}>"
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{_type_name(t.value_type)}, {t.list_size}>"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{_type_name(t.value_type)}>"
    return _DTYPES.get(str(t), str(t))


def _simplify(inner: dict):
    """`datasets` writes `list: int64` for a list of a scalar and `list: [fields]` for a list of structs."""
    if list(inner) == ["dtype"]:
        return inner["dtype"]
    if list(inner) == ["struct"]:
        return inner["struct"]
    return inner


def dataset_stats(release_dir: str) -> dict:
    """Everything the card says, read from a release folder (JSON-serializable, no formatting)."""
    configs = {c: _config_stats(release_dir, c) for c in CONFIGS
               if glob.glob(os.path.join(release_dir, "data", c, "*.parquet"))}
    records = read_table(release_dir, "records", columns=[c for c in _STAT_COLUMNS
                                                          if c in configs["records"]["column_names"]])
    workloads = read_table(release_dir, "workloads", columns=["workload_id", "family", "source", "networks"])
    meta = pq.read_schema(os.path.join(release_dir, configs["records"]["files"][0]["path"])).metadata or {}
    ok = records.filter(pc.equal(records["status"], "ok"))
    stats = {
        "release": json.loads(meta.get(b"cwm_bench.release", b"{}")),
        "configs": configs,
        "total_data_bytes": sum(c["download_size"] for c in configs.values()),
        "records": records.num_rows,
        "ok_records": ok.num_rows,
        "by_status": _counts(records["status"]),
        "by_origin": _counts(records["origin"]),
        "error_rate": _error_rates(records),
        "tasks": workloads.num_rows,
        "tasks_by_source": _counts(workloads["source"]),
        "tasks_per_network": _tasks_per_network(workloads),
        "families": _families(workloads, records, ok),
        "ok_per_task": _ok_per_task(workloads, ok),
        "latency_s": _spread(ok["latency_s"].to_pylist()),
        "task_best_to_worst": _best_to_worst(ok),
        "splits": {s: _split_sizes(records, SPLIT_COLUMNS[s]) for s in SPLIT_SCHEMES
                   if SPLIT_COLUMNS[s] in records.column_names},
        "split_descriptions": dict(SPLIT_SCHEMES),
        "hardware": _hardware(records),
        "targets": _counts(records["target"]),
        "protocols": [{"protocol": json.loads(p), "records": n} for p, n in _counts(records["protocol"]).items()],
        "tvm_versions": sorted(_counts(records["tvm_version"])),
        "collector_versions": sorted(_counts(records["collector_version"])),
        "measured_from": _iso(pc.min(records["measured_at"]).as_py()),
        "measured_to": _iso(pc.max(records["measured_at"]).as_py()),
        "noise": _noise(release_dir, configs),
    }
    return stats


def _config_stats(root: str, config: str) -> dict:
    paths = sorted(glob.glob(os.path.join(root, "data", config, "*.parquet")))
    files = []
    for p in paths:
        # num_bytes (the Arrow size in memory) is what `datasets` checks in the card; reading the
        # file is the only exact way (Parquet metadata is off ~2x), and releases are MBs, not GBs.
        files.append({"path": os.path.relpath(p, root), "bytes": os.path.getsize(p),
                      "rows": pq.ParquetFile(p).metadata.num_rows, "num_bytes": pq.read_table(p).nbytes})
    schema = pq.read_schema(paths[0])
    split = os.path.basename(paths[0]).split("-")[0]
    return {"data_files": f"data/{config}/{split}-*.parquet", "split": split, "files": files,
            "num_examples": sum(f["rows"] for f in files), "download_size": sum(f["bytes"] for f in files),
            "num_bytes": sum(f["num_bytes"] for f in files),
            "column_names": schema.names, "column_types": [_type_name(f.type) for f in schema],
            "features": hf_features(schema)}


def _counts(column: pa.ChunkedArray) -> dict:
    pairs = [(str(r["values"]), r["counts"]) for r in pc.value_counts(column).to_pylist()]
    return dict(sorted(pairs, key=lambda kv: (-kv[1], kv[0])))


def _error_rates(records: pa.Table) -> dict:
    rates = {}
    for origin, n in _counts(records["origin"]).items():
        subset = records.filter(pc.equal(records["origin"], origin))
        rates[origin] = 1.0 - pc.sum(pc.equal(subset["status"], "ok")).as_py() / n
    rates["all"] = 1.0 - pc.sum(pc.equal(records["status"], "ok")).as_py() / max(records.num_rows, 1)
    return rates


def _tasks_per_network(workloads: pa.Table) -> dict:
    counts: dict[str, int] = {}
    for networks in workloads["networks"].to_pylist():
        for n in {u["network"] for u in networks or []}:
            counts[n] = counts.get(n, 0) + 1
    return dict(sorted(counts.items()))


def _families(workloads: pa.Table, records: pa.Table, ok: pa.Table) -> dict:
    family_of = dict(zip(workloads["workload_id"].to_pylist(), workloads["family"].to_pylist(), strict=True))
    out: dict[str, dict] = {}
    for fam in sorted(set(family_of.values())):
        out[fam] = {"tasks": sum(f == fam for f in family_of.values()), "records": 0, "ok": 0}
    for wid in records["workload_id"].to_pylist():
        out[family_of[wid]]["records"] += 1
    for wid in ok["workload_id"].to_pylist():
        out[family_of[wid]]["ok"] += 1
    return out


def _ok_per_task(workloads: pa.Table, ok: pa.Table) -> dict:
    per_task = dict.fromkeys(workloads["workload_id"].to_pylist(), 0)
    for wid in ok["workload_id"].to_pylist():
        per_task[wid] += 1
    counts = sorted(per_task.values())
    return {"min": counts[0], "median": statistics.median(counts), "max": counts[-1],
            "tasks_without_ok": sum(c == 0 for c in counts),
            "tasks_with_200_ok": sum(c >= 200 for c in counts)} if counts else {}


def _spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)} if values else {}


def _best_to_worst(ok: pa.Table) -> dict:
    """Per task, slowest / fastest ok latency: how much the schedule matters (tasks with >= 2 ok records)."""
    grouped = ok.group_by("workload_id").aggregate([("latency_s", "min"), ("latency_s", "max"),
                                                     ("latency_s", "count")])
    ratios = [hi / lo for lo, hi, n in zip(*(grouped[c].to_pylist() for c in ("latency_s_min", "latency_s_max",
                                                                             "latency_s_count")), strict=True)
              if n >= 2 and lo > 0]
    return _spread(ratios)


def _split_sizes(records: pa.Table, column: str) -> dict:
    sizes = {}
    for side in ("train", "test"):
        subset = records.filter(pc.equal(records[column], side))
        sizes[side] = {"records": subset.num_rows, "tasks": len(pc.unique(subset["workload_id"]))}
    return sizes


def _hardware(records: pa.Table) -> list[dict]:
    out = []
    for hw_id, n in _counts(records["hw_id"]).items():
        row = records.filter(pc.equal(records["hw_id"], hw_id)).slice(0, 1).to_pylist()[0]
        details = json.loads(row["hw_descriptor"] or "{}").get("details", {})
        out.append({"hw_id": hw_id, "kind": row["hw_kind"], "name": row["hw_name"], "arch": row["hw_arch"],
                    "cores": row["hw_num_cores"],
                    "isa": list(row["hw_isa"] or []), "details": details, "records": n})
    return out


def _iso(value) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _noise(root: str, configs: dict) -> dict | None:
    """Two-run agreement and estimated oracle accuracy when the release carries re-measurements; None
    without a noise table."""
    if "noise" not in configs:
        return None
    from cwm_bench.noise import dataset_noise_reference

    reference = dataset_noise_reference(root)
    return {"rows": configs["noise"]["num_examples"], "reference": json.loads(json.dumps(reference, default=str))}


# -- rendering (pure: stats in, text out) ----------------------------------------------------------
