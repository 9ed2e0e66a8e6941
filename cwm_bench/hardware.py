"""What a record was measured on, and the TVM target that builds for it."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass, field

# The ISA extensions that change generated code; recorded so rows from different CPUs never mix.
_ISA_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq",
              "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
              "asimd", "sve", "sve2")


@dataclass(frozen=True)
class HardwareDescriptor:
    kind: str  # "cpu" | "gpu"
    name: str  # CPU model name or GPU name
    arch: str  # LLVM cpu name (mcpu) or CUDA arch (sm_90)
    num_cores: int
    isa: tuple[str, ...] = ()
    details: dict = field(default_factory=dict)  # memory, clocks, driver, cache sizes...

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def hw_id(self) -> str:
        """Stable id of this hardware (detail values such as free memory excluded)."""
        key = json.dumps([self.kind, self.name, self.arch, self.num_cores, list(self.isa)])
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    @classmethod
    def from_json(cls, text: str) -> HardwareDescriptor:
        data = json.loads(text)
        data["isa"] = tuple(data.get("isa", ()))
        return cls(**data)


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if ":" in line:
                    key, _, value = line.partition(":")
                    info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def detect_cpu(num_cores: int | None = None) -> HardwareDescriptor:
    """Describe this machine's CPU as LLVM and the kernel see it."""
    from tvm.target import codegen

    info = _cpuinfo()
    flags = set(info.get("flags", info.get("Features", "")).split())
    return HardwareDescriptor(
        kind="cpu",
        name=info.get("model name", platform.processor() or "unknown"),
        arch=str(codegen.llvm_get_system_cpu()),
        num_cores=num_cores or usable_cores(),
        isa=tuple(f for f in _ISA_FLAGS if f in flags),
        details={"machine": platform.machine(), "cache_size": info.get("cache size", ""),
                 "cpu_mhz": info.get("cpu MHz", ""), "vendor": info.get("vendor_id", "")},
    )


def gpu_arch(compute_version: str | float) -> str:
    """A CUDA compute version as TVM's target names its arch: "9.0" -> "sm_90"."""
    return "sm_" + str(compute_version).replace(".", "")


def target_for(hardware: HardwareDescriptor):
    """The TVM target that generates code for `hardware` (host CPU features via mcpu)."""
    import tvm

    if hardware.kind == "cpu":
        return tvm.target.Target({"kind": "llvm", "mcpu": hardware.arch, "num-cores": hardware.num_cores})
    if hardware.kind == "gpu":
        attrs = {k: hardware.details[k] for k in CUDA_TARGET_ATTRS if k in hardware.details}
        return tvm.target.Target({"kind": "cuda", "arch": hardware.arch, **attrs}, host={"kind": "llvm"})
    raise ValueError(f"unknown hardware kind {hardware.kind!r}")


# CUDA target attributes MetaSchedule's GPU rules and verifiers read (thread binding limits, the
# shared-memory and register budgets of VerifyGPUCode); everything else in `details` is metadata.
CUDA_TARGET_ATTRS = ("max_threads_per_block", "max_shared_memory_per_block", "thread_warp_size",
                     "registers_per_block", "l2_cache_size_bytes")


def _hopper(name: str, memory_gb: int, l2_mb: int) -> HardwareDescriptor:
    return HardwareDescriptor(
        kind="gpu", name=name, arch="sm_90", num_cores=132,  # num_cores: streaming multiprocessors
        details={"max_threads_per_block": 1024, "max_shared_memory_per_block": 49152, "thread_warp_size": 32,
                 "registers_per_block": 65536, "l2_cache_size_bytes": l2_mb * 2**20, "memory_gb": memory_gb})


# Build-time descriptions of the lent GPUs (device names as nvidia-smi / the CUDA runtime report them).
# Rows take their hardware columns from the measuring device instead (`cwm_bench.cuda.ingest`).
GPU_PRESETS: dict[str, HardwareDescriptor] = {
    "h100": _hopper("NVIDIA H100 80GB HBM3", 80, 50),
    "h200": _hopper("NVIDIA H200", 141, 60),
}
