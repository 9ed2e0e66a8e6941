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


def target_for(hardware: HardwareDescriptor):
    """The TVM target that generates code for `hardware` (host CPU features via mcpu)."""
    import tvm

    if hardware.kind == "cpu":
        return tvm.target.Target({"kind": "llvm", "mcpu": hardware.arch, "num-cores": hardware.num_cores})
    if hardware.kind == "gpu":
        return tvm.target.Target({"kind": "cuda", "arch": hardware.arch,
                                  **{k: v for k, v in hardware.details.items() if k.startswith("max_")}},
                                 host={"kind": "llvm"})
    raise ValueError(f"unknown hardware kind {hardware.kind!r}")
