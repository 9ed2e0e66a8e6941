"""A GPU on this machine: `collect --target cuda` measures on it directly (no bundles).

The device is described exactly as the bundle flow's `tools/cuda_measure.py` describes it (TVM's
device attributes, then nvidia-smi: name, UUID, memory, clocks, driver), so a local collection and
a bundle collection on the same GPU share one `hw_id`.
"""

from __future__ import annotations

import datetime as dt
import subprocess

from cwm_bench.hardware import HardwareDescriptor
from cwm_bench.isolation import IsolatedWorker, Outcome

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


def ask_worker(handler: str, requests: list[dict], timeout_s: float) -> list[Outcome] | str:
    """The replies of one fresh measuring worker to `requests`, in order, up to the first that fails;
    or why the worker did not start. A broken driver costs that process only."""
    worker = IsolatedWorker(handler)
    try:
        outcomes: list[Outcome] = []
        for request in requests:
            outcomes.append(worker.call(request, timeout_s))
            if not outcomes[-1].ok:
                break
        return outcomes
    except RuntimeError as exc:
        return f"the measuring worker did not start: {exc}"
    finally:
        worker.close()


def described_gpu(tvm_device: dict, smi: dict) -> HardwareDescriptor:
    """A GPU as rows record it, from TVM's device attributes and nvidia-smi's fields (as ingest-cuda)."""
    from cwm_bench.cuda.ingest import hardware_from_device

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return hardware_from_device({"tvm_device": tvm_device, "nvidia_smi": smi, "collected_at": now})


def local_gpu(timeout_s: float = 120.0,
              handler: str = "cwm_bench.measure.worker:handle") -> tuple[HardwareDescriptor | None, str]:
    """(this machine's first CUDA GPU as rows record it, "") or (None, why there is none).

    Asked in an isolated worker (the one that will measure): a broken driver costs that process."""
    replies = ask_worker(handler, [{"op": "info", "device": "cuda"}], timeout_s)
    if isinstance(replies, str):
        return None, replies
    (outcome,) = replies
    if not outcome.ok:
        return None, f"TVM could not open a CUDA device here: {(outcome.message or outcome.status).strip()[:300]}"
    if not outcome.value.get("exist"):
        return None, "no CUDA GPU on this machine (tvm.cuda(0).exist is False)"
    return described_gpu(outcome.value, nvidia_smi() or {}), ""
