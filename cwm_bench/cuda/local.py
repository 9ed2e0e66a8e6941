"""A GPU on this machine: `collect --target cuda` measures on it directly (no bundles).

The device is described exactly as the bundle flow's `tools/cuda_measure.py` describes it (TVM's
device attributes, then nvidia-smi: name, UUID, memory, clocks, driver), so a local collection and
a bundle collection on the same GPU share one `hw_id`.
"""

from __future__ import annotations

import datetime as dt
import subprocess

from cwm_bench.hardware import HardwareDescriptor
from cwm_bench.isolation import IsolatedWorker

NVIDIA_SMI_FIELDS = ("name", "uuid", "memory.total", "clocks.max.sm", "clocks.max.memory", "clocks.sm",
                     "driver_version", "compute_cap", "pci.bus_id", "power.limit")


def nvidia_smi(index: int = 0) -> dict | None:
    """nvidia-smi's view of GPU `index` (None where there is no nvidia-smi or no GPU)."""
    try:
        text = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}",
                               "--format=csv,noheader,nounits", "-i", str(index)], capture_output=True, text=True,
                              timeout=30, check=True).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None
    return dict(zip(NVIDIA_SMI_FIELDS, (v.strip() for v in text.split(",")), strict=False))


def local_gpu(timeout_s: float = 120.0,
              handler: str = "cwm_bench.measure.worker:handle") -> tuple[HardwareDescriptor | None, str]:
    """(this machine's first CUDA GPU as rows record it, "") or (None, why there is none).

    Asked in an isolated worker (the one that will measure): a broken driver costs that process."""
    from cwm_bench.cuda.ingest import hardware_from_device

    worker = IsolatedWorker(handler)
    try:
        outcome = worker.call({"op": "info", "device": "cuda"}, timeout_s)
    except RuntimeError as exc:
        return None, f"the measuring worker did not start: {exc}"
    finally:
        worker.close()
    if not outcome.ok:
        return None, f"TVM could not open a CUDA device here: {(outcome.message or outcome.status).strip()[:300]}"
    if not outcome.value.get("exist"):
        return None, "no CUDA GPU on this machine (tvm.cuda(0).exist is False)"
    device = {"tvm_device": outcome.value, "nvidia_smi": nvidia_smi() or {},
              "collected_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return hardware_from_device(device), ""
