"""Step 3 of a GPU dataset: join a bundle's pending rows with the device's results.json into
records rows (the CPU schema; hardware columns from device.json) in a DatasetStore folder."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from cwm_bench.cuda import MANIFEST, PENDING, WORKLOADS, bundle_name
from cwm_bench.hardware import HardwareDescriptor, gpu_arch
from cwm_bench.measure.protocol import summarize
from cwm_bench.rows.records import provenance
from cwm_bench.rows.schema import STATUSES
from cwm_bench.rows.store import DatasetStore

MEASURED_BY = "cuda_measure"  # tools/cuda_measure.py on the GPU machine; the GPU is in the hw_* columns


def hardware_from_device(device: dict) -> HardwareDescriptor:
    """The measuring GPU as `tools/cuda_measure.py` described it (TVM's device attributes first)."""
    tvm_dev = device.get("tvm_device") or {}
    smi = device.get("nvidia_smi") or {}
    if "error" in tvm_dev or not tvm_dev:
        raise ValueError(f"device.json has no CUDA device attributes: {tvm_dev.get('error', 'missing')}")
    details = {"max_threads_per_block": tvm_dev.get("max_threads_per_block"),
               "max_shared_memory_per_block": tvm_dev.get("max_shared_memory_per_block"),
               "thread_warp_size": tvm_dev.get("warp_size"), "l2_cache_size_bytes": tvm_dev.get("l2_cache_size_bytes"),
               "memory_bytes": tvm_dev.get("total_global_memory"), "max_clock_khz": tvm_dev.get("max_clock_rate_khz"),
               "cuda_driver_version": tvm_dev.get("driver_version"), "driver": smi.get("driver_version"),
               "clocks_max_sm_mhz": smi.get("clocks.max.sm"), "clocks_max_memory_mhz": smi.get("clocks.max.memory"),
               "power_limit_w": smi.get("power.limit"), "uuid": smi.get("uuid"), "pci_bus_id": smi.get("pci.bus_id"),
               "collected_at": device.get("collected_at")}
    return HardwareDescriptor(
        kind="gpu", name=str(tvm_dev.get("device_name") or smi.get("name") or "unknown"),
        arch=gpu_arch(tvm_dev["compute_version"]),
        num_cores=int(tvm_dev["multi_processor_count"]),
        details={k: v for k, v in details.items() if v is not None})


@dataclass
class IngestReport:
    rows: int = 0
    unmeasured: int = 0  # built candidates with no result (a --limit run, or a run that was cut off)
    by_status: dict[str, int] = field(default_factory=dict)


def _load_json(path: str) -> dict:
    with open(path) as handle:
        return json.load(handle)


def _measured_at(results: dict, device: dict, results_path: str) -> dt.datetime:
    """When the run ended (results.json's `finished_at`), else when it started (device.json), else the
    file's mtime: copying the files around must not move the rows' time."""
    for text in (results.get("finished_at"), device.get("collected_at")):
        if text:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt.datetime.fromtimestamp(os.path.getmtime(results_path), dt.UTC)


def ingest_cuda(bundle: str, results_path: str, device_path: str, out_dir: str) -> IngestReport:
    """Append the bundle's measured candidates (and its build errors) to the dataset in `out_dir`."""
    manifest = _load_json(os.path.join(bundle, MANIFEST))
    results = _load_json(results_path)
    device = _load_json(device_path)
    hardware = hardware_from_device(device)
    if hardware.arch != manifest["target"].get("arch"):
        raise ValueError(f"kernels were built for {manifest['target'].get('arch')} but measured on "
                         f"{hardware.arch} ({hardware.name})")
    listed = results.get("bundles") or []
    name = bundle_name(bundle)
    if any("/" in b for b in listed) and name not in listed:  # older results list basenames only
        raise ValueError(f"{results_path} did not measure bundle {name} (it measured {', '.join(listed)})")
    # the build round travels with each row: 1 = random candidates, 2+ = evolutionary ones seeded by earlier rounds
    protocol_json = json.dumps({**results.get("protocol", {}), "round": int(manifest.get("round", 1))},
                               sort_keys=True)
    target_json = json.dumps(manifest["target"], sort_keys=True)
    measured = results.get("results", {})
    stamp = _measured_at(results, device, results_path)
    report = IngestReport()
    rows = []
    for row in pq.read_table(os.path.join(bundle, PENDING)).to_pylist():
        key = row["record_id"]
        if row["status"] == "ok":  # built: the device decides
            result = measured.get(key)
            if result is None:
                report.unmeasured += 1
                continue
            if result["status"] not in STATUSES:
                raise ValueError(f"{results_path}: unknown status {result['status']!r} for {key}")
            latencies = [float(x) for x in result.get("latencies_s") or []]
            status = result["status"] if latencies or result["status"] != "ok" else "run_error"
            error = result.get("error") or (None if status == result["status"] else "no timings recorded")
            row.update(status=status, latencies_s=latencies, error=error,
                       checked=bool(result.get("checked")),
                       latency_s=summarize(latencies) if status == "ok" else None)
        row.update(hw_id=hardware.hw_id, hw_kind=hardware.kind, hw_name=hardware.name, hw_arch=hardware.arch,
                   hw_num_cores=hardware.num_cores, hw_isa=[], hw_descriptor=hardware.to_json(),
                   protocol=protocol_json, measured_at=stamp, measured_by=MEASURED_BY)
        rows.append(row)
        report.by_status[row["status"]] = report.by_status.get(row["status"], 0) + 1
    store = DatasetStore(out_dir, provenance(hardware, target_json, protocol_json))
    try:
        known = store.known_keys("workloads")
        workloads = [w for w in pq.read_table(os.path.join(bundle, WORKLOADS)).to_pylist()
                     if w["workload_id"] not in known]
        store.write("workloads", workloads)
        have = store.known_keys("records")  # re-ingesting adds nothing, another GPU adds its own rows
        fresh = [r for r in rows if (r["record_id"], r["hw_id"]) not in have]
        store.write("records", fresh)
        report.rows = len(fresh)
    finally:
        store.close()
    return report
