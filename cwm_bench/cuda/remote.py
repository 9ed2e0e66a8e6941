"""A GPU behind TVM's RPC tracker: `collect --target cuda --rpc-tracker` describes it from a server.

The description comes from the server's CUDA device API over the session (name, compute version,
SMs, L2, shared memory, memory, clock, driver), as `tools/cuda_measure.py` reads it on the device;
nvidia-smi's fields (UUID, memory clocks) are not reachable through TVM's runtime-only server, and
the hw_id depends on neither, so the same GPU gets the same hw_id as collected locally.
"""

from __future__ import annotations

from cwm_bench.cuda.local import ask_worker, described_gpu
from cwm_bench.hardware import HardwareDescriptor
from cwm_bench.measure.rpc import RpcConfig

REQUIRED = ("device_name", "compute_version", "multi_processor_count")


def rpc_gpu(config: RpcConfig, timeout_s: float = 120.0,
            handler: str = "cwm_bench.measure.worker:handle") -> tuple[HardwareDescriptor | None, str]:
    """(the GPU of a server under `config.key` as rows record it, "") or (None, why it cannot be told)."""
    connect = {"op": "connect", "tracker": list(config.address), "key": config.key, "device": "cuda",
               "session_timeout_s": timeout_s, "wait_s": timeout_s / 2}
    replies = ask_worker(handler, [connect, {"op": "info", "device": "cuda", "rpc": True}], timeout_s)
    if isinstance(replies, str):
        return None, replies
    connected, *rest = replies
    if not connected.ok:
        return None, f"no session from the tracker: {(connected.message or connected.status).strip()[:300]}"
    server, outcome = connected.value["server"], rest[0]
    if not outcome.ok:
        return None, f"server {server} could not open its CUDA device: {(outcome.message or outcome.status)[:300]}"
    info = outcome.value
    if not info.get("exist"):
        return None, f"server {server} has no CUDA device (its TVM runtime lacks CUDA, or no GPU is visible to it)"
    missing = [name for name in REQUIRED if info.get(name) in (None, "", 0)]
    if missing:
        return None, f"server {server} did not tell its GPU's {', '.join(missing)}"
    return described_gpu(info, {}), ""
