"""Turn workloads and measured candidates into table rows (dicts matching `rows.schema`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np

from cwm_bench import __version__
from cwm_bench.candidates.actions import actions_from_trace_json
from cwm_bench.hardware import HardwareDescriptor
from cwm_bench.measure.protocol import summarize
from cwm_bench.workload.workload import Workload


def record_id(workload_id: str, program_hash: str) -> str:
    """Id of a program of a workload; the same on every hardware (a dataset key is record_id + hw_id)."""
    return hashlib.sha1(f"{workload_id}:{program_hash}".encode()).hexdigest()[:16]


def tvm_version() -> str:
    import tvm

    return str(tvm.__version__)


def workload_row(w: Workload) -> dict:
    import tvm

    return {
        "workload_id": w.workload_id,
        "task_name": w.task_name,
        "family": w.family,
        "source": w.source,
        "networks": [{"network": u.network, "weight": u.weight} for u in w.networks],
        "flops": w.flops,
        "arg_names": [a.name for a in w.args],
        "arg_shapes": [list(a.shape) for a in w.args],
        "arg_dtypes": [a.dtype for a in w.args],
        "mod_json": tvm.ir.save_json(w.mod),
        "tvmscript": w.mod.script(),
    }


def record_row(*, workload_id: str, program_hash: str, trace_json: str, features: np.ndarray | None,
               target_json: str, hardware: HardwareDescriptor, status: str, latencies_s: list[float],
               error: str | None, checked: bool, origin: str, design_space: int, seed: int,
               protocol_json: str, measured_at: dt.datetime | None = None,
               measured_by: str | None = None) -> dict:
    ok = status == "ok"
    return {
        "record_id": record_id(workload_id, program_hash),
        "workload_id": workload_id,
        "target": target_json,
        "hw_id": hardware.hw_id,
        "hw_kind": hardware.kind,
        "hw_name": hardware.name,
        "hw_arch": hardware.arch,
        "hw_num_cores": hardware.num_cores,
        "hw_isa": list(hardware.isa),
        "hw_descriptor": hardware.to_json(),
        "program_hash": program_hash,
        "trace_json": trace_json,
        "actions": actions_from_trace_json(trace_json),
        "features": None if features is None else features.tolist(),
        "latencies_s": list(latencies_s),
        "latency_s": summarize(latencies_s) if ok else None,
        "status": status,
        "error": error,
        "checked": checked,
        "origin": origin,
        "design_space": design_space,
        "seed": seed,
        "protocol": protocol_json,
        "measured_at": measured_at or dt.datetime.now(dt.UTC),
        "measured_by": measured_by,
        "collector_version": __version__,
        "tvm_version": tvm_version(),
    }


def provenance(hardware: HardwareDescriptor, target_json: str, protocol_json: str) -> dict:
    return {"collector": "cwm-bench", "collector_version": __version__, "tvm_version": tvm_version(),
            "hardware": json.loads(hardware.to_json()), "target": target_json,
            "protocol": json.loads(protocol_json)}
