"""Parallel, isolated builds: one persistent worker per core, a timeout per candidate."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from cwm_bench.isolation import WorkerPool, cpus_env

BUILD_STATUS = {"ok": "ok", "error": "build_error", "crash": "build_error", "timeout": "timeout"}


@dataclass
class BuildResult:
    key: str
    status: str  # "ok" | "build_error" | "timeout"
    lib_path: str | None
    error: str | None
    build_s: float
    device_binaries: tuple[str, ...] = ()  # digests of compiled CUDA kernels (GPU targets only)


def memory_scratch(min_free_bytes: int = 2**30) -> str | None:
    """A RAM-backed folder for short-lived build files (/dev/shm), or None where there is none or it
    has under `min_free_bytes` free (containers often give it 64 MB; a full one would fail builds)."""
    path = "/dev/shm"
    if not (os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)):
        return None
    stats = os.statvfs(path)
    return path if stats.f_bavail * stats.f_frsize >= min_free_bytes else None


class ParallelBuilder:
    """Compile IRModules for `target_json` into loadable libraries under a scratch folder."""

    def __init__(self, target_json: str, num_workers: int | None = None, timeout_s: float = 120.0,
                 artifact_dir: str | None = None, device_binaries: bool = False, cpus: set[int] | None = None,
                 lender_cpus: set[int] | None = None):
        self.target_json = target_json
        # CUDA targets: kernels are compiled to cubins inside each library (what `collect --target cuda`
        # loads, locally or on a runtime-only RPC server); the bundle flow (`device_binaries`) instead
        # keeps TVM's CUDA source in the library and writes cubins beside it, served by digest.
        self.embed_device_code = json.loads(target_json).get("kind") == "cuda" and not device_binaries
        self.timeout_s = timeout_s
        self._own_dir = artifact_dir is None
        scratch = memory_scratch()
        self.artifact_dir = artifact_dir or tempfile.mkdtemp(prefix="cwm-bench-build-", dir=scratch)
        # GPU targets: every build also compiles its CUDA kernels to cubins, shared in one folder
        self.device_binaries_dir = os.path.join(self.artifact_dir, "kernels") if device_binaries else None
        if self.device_binaries_dir:
            os.makedirs(self.device_binaries_dir, exist_ok=True)
        workers = num_workers or len(cpus or os.sched_getaffinity(0))
        # One compile per core; LLVM itself must not fan out further. `cpus`: the cores builds may use
        # (the pipelined collector keeps them off the measuring cores); `lender_cpus`: one more worker
        # there, used only while `build(..., lender_free)` says nothing is being measured.
        # TMPDIR: export_library writes objects there and the linker its temporaries (~10% of a build on disk)
        env = {"TVM_NUM_THREADS": "1", **({"TMPDIR": scratch} if scratch else {})}
        if self.embed_device_code:
            from cwm_bench.cuda.driver_stub import build_env

            env.update(build_env())
        self.pool = WorkerPool("cwm_bench.build.worker:build", workers, env={**env, **cpus_env(cpus)},
                               lender_env={**env, **cpus_env(lender_cpus)} if lender_cpus else None)

    def spawn(self) -> None:
        """Start all build workers now, in parallel, without waiting (the first build waits)."""
        self.pool.spawn()

    def build(self, items: list[tuple[str, object]],
              lender_free: Callable[[], bool] | None = None) -> list[BuildResult]:
        """Build `(key, IRModule)` pairs; a failure or hang becomes that item's error result."""
        import tvm

        requests = [{"mod_json": tvm.ir.save_json(mod), "target": self.target_json,
                     "out_path": os.path.join(self.artifact_dir, f"{key}.so"),
                     "device_binaries_dir": self.device_binaries_dir,
                     "embed_device_code": self.embed_device_code} for key, mod in items]
        results = []
        for (key, _), outcome in zip(items, self.pool.map(requests, self.timeout_s, lender_free), strict=True):
            if outcome.ok:
                results.append(BuildResult(key, "ok", outcome.value["path"], None, outcome.value["build_s"],
                                           tuple(outcome.value.get("device_binaries", ()))))
            else:
                results.append(BuildResult(key, BUILD_STATUS[outcome.status], None,
                                           f"{outcome.status}: {outcome.message}", outcome.seconds))
        return results

    def discard(self, results: list[BuildResult]) -> None:
        for r in results:
            if r.lib_path and os.path.exists(r.lib_path):
                os.remove(r.lib_path)

    def close(self) -> None:
        self.pool.close()
        if self._own_dir:
            shutil.rmtree(self.artifact_dir, ignore_errors=True)
