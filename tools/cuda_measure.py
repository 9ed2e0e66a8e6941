#!/usr/bin/env python3
"""Time a CUDA kernel bundle on the GPU of this machine (step 2 of a GPU dataset; runs on the lent
device with runtime-only TVM: stdlib + numpy + `tvm`, no cwm_bench).

    TVM_USE_RUNTIME_LIB=1 PYTHONPATH=RUNTIME/site python3 tools/cuda_measure.py BUNDLE --out $OUT

Protocol, per workload of the bundle: a worker process loads every kernel, warms it up and
calibrates calls per timing (`--min-repeat-ms`); then `--rounds` interleaved rounds (kernel order
shuffled per round) take `--repeats` timings each with TVM's time_evaluator, which times CUDA
devices with CUDA events. `--l2-flush` copies 2 x L2 bytes on the device before every timing and
times single calls (cold L2). Outputs are compared with the workload's reference kernel (same
random inputs). A kernel that hangs (`--timeout`) or crashes kills only the worker, which is
restarted: its kernel is recorded as `timeout` / `run_error`.
Writes OUT/results.json (key -> status, latencies_s, error, checked) and OUT/device.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import subprocess
import sys
import time

NVIDIA_SMI_FIELDS = ("name", "memory.total", "clocks.max.sm", "clocks.max.memory", "clocks.sm",
                     "driver_version", "compute_cap", "pci.bus_id", "power.limit")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", help="bundle folder (holds manifest.json and libs/)")
    p.add_argument("--out", default=os.environ.get("OUT", "."), help="where results.json/device.json go")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="timings per kernel per round")
    p.add_argument("--min-repeat-ms", type=float, default=5.0, help="each warm timing loops this long")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls after loading")
    p.add_argument("--l2-flush", action="store_true", help="cold-L2 timings of single calls")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per worker request")
    p.add_argument("--no-check", action="store_true", help="skip output checks against the reference")
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--atol", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="time only the first N candidates (0: all)")
    return p.parse_args(argv)


def read_manifest(bundle: str) -> dict:
    with open(os.path.join(bundle, "manifest.json")) as handle:
        manifest = json.load(handle)
    if manifest.get("format") != 1:
        raise SystemExit(f"{bundle}: unknown bundle format {manifest.get('format')!r}")
    return manifest


def plan(manifest: dict, limit: int = 0) -> dict[str, list[dict]]:
    """Built candidates grouped by workload, in manifest order."""
    groups: dict[str, list[dict]] = {}
    todo = [c for c in manifest["candidates"] if c.get("lib")]
    for c in todo[:limit] if limit else todo:
        groups.setdefault(c["workload_id"], []).append(c)
    return groups


# -- worker (a child process; all CUDA work happens here) ------------------------------------------
def import_tvm_with_cuda():
    """`import tvm`, plus the CUDA runtime library that runtime-only mode does not load by itself
    (`TVM_USE_RUNTIME_LIB=1` skips tvm's built-in backends, so CUDA modules would not load)."""
    import ctypes

    import tvm

    lib_dir = os.path.dirname(os.path.abspath(tvm.base._LOADED_LIBS["tvm_runtime"]._name))
    for name in ("libtvm_runtime_cuda.so", "libtvm_runtime_extra.so"):
        path = os.path.join(lib_dir, name)
        key = name[3:-3]
        if os.path.exists(path) and key not in tvm.base._LOADED_LIBS:
            tvm.base._LOADED_LIBS[key] = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    return tvm


class _Worker:
    def __init__(self):
        import numpy as np

        tvm = import_tvm_with_cuda()
        self.np, self.tvm, self.dev = np, tvm, tvm.cuda(0)
        self.modules: dict = {}
        self.numbers: dict[str, int] = {}
        self.inputs: list = []
        self.reference: list | None = None

    def info(self, _req: dict) -> dict:
        d = self.dev
        return {"device_name": d.device_name, "compute_version": d.compute_version,
                "multi_processor_count": d.multi_processor_count, "l2_cache_size_bytes": d.l2_cache_size_bytes,
                "max_shared_memory_per_block": d.max_shared_memory_per_block, "warp_size": d.warp_size,
                "max_threads_per_block": d.max_threads_per_block, "total_global_memory": d.total_global_memory,
                "max_clock_rate_khz": d.max_clock_rate, "driver_version": d.driver_version,
                "tvm_version": str(self.tvm.__version__)}

    def _run(self, module) -> list:
        tensors = [self.tvm.runtime.tensor(a.copy(), self.dev) for a in self.inputs]
        module["main"](*tensors)
        self.dev.sync()
        return [t.numpy() for t in tensors]

    def workload(self, req: dict) -> dict:
        np = self.np
        rng = np.random.default_rng(req["seed"])
        self.inputs = [rng.uniform(-1, 1, size=s).astype(d) if d.startswith(("float", "bfloat"))
                       else rng.integers(0, 4, size=s).astype(d) for s, d in req["arg_specs"]]
        self.tensors = [self.tvm.runtime.tensor(a, self.dev) for a in self.inputs]
        self.modules.clear()
        self.numbers.clear()
        ref = req.get("reference")
        self.reference = self._run(self.tvm.runtime.load_module(ref)) if ref else None
        return {"reference": self.reference is not None}

    def load(self, req: dict) -> dict:
        module = self.tvm.runtime.load_module(req["lib"])
        for _ in range(req["warmup"]):
            module["main"](*self.tensors)
        self.dev.sync()
        per_call = module.time_evaluator("main", self.dev, number=1, repeat=1,
                                         min_repeat_ms=req["min_repeat_ms"])(*self.tensors).mean
        self.modules[req["key"]] = module
        self.numbers[req["key"]] = max(1, int(req["min_repeat_ms"] / 1000 / max(per_call, 1e-9) + 0.999))
        return {"per_call_s": per_call}

    def time(self, req: dict) -> dict:
        module = self.modules[req["key"]]
        flush = req["flush_bytes"]
        evaluator = module.time_evaluator("main", self.dev, number=1 if flush else self.numbers[req["key"]],
                                          repeat=req["repeats"], cache_flush_bytes=flush)
        return {"latencies_s": [float(x) for x in evaluator(*self.tensors).results]}

    def check(self, req: dict) -> dict:
        np = self.np
        worst = 0.0
        for expected, actual in zip(self.reference or [], self._run(self.modules[req["key"]]), strict=True):
            if not np.allclose(actual, expected, rtol=req["rtol"], atol=req["atol"], equal_nan=True):
                worst = max(worst, float(np.nanmax(np.abs(actual.astype("f8") - expected.astype("f8")))))
        return {"match": worst == 0.0, "max_abs_error": worst}


def worker_main() -> None:
    """Serve JSON-line requests from stdin; one JSON-line reply each on stdout."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints from TVM go to stderr, never into the reply stream
    worker = _Worker()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            reply = {"ok": True, "value": getattr(worker, req["op"])(req)}
        except Exception as exc:  # noqa: BLE001  (reported to the parent as this request's error)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[-2000:]}
        out.write(json.dumps(reply) + "\n")
        out.flush()


class WorkerProcess:
    """The parent's handle: `call` returns (status, value_or_error); a hang or crash restarts it."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self.proc

    def call(self, op: str, timeout: float | None = None, **req) -> tuple[str, object]:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"op": op, **req}) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            self.kill()
            return "run_error", "worker died"
        ready, _, _ = select.select([proc.stdout], [], [], timeout or self.timeout)
        if not ready:
            self.kill()
            return "timeout", f"{op} took over {timeout or self.timeout:.0f} s"
        line = proc.stdout.readline()
        if not line:
            self.kill()
            return "run_error", f"worker crashed during {op} (exit code {proc.poll()})"
        reply = json.loads(line)
        return ("ok", reply["value"]) if reply["ok"] else ("run_error", reply["error"])

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


# -- parent -----------------------------------------------------------------------------------------
def device_info(worker: WorkerProcess) -> dict:
    info: dict = {"collected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        text = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True,
                              timeout=30, check=True).stdout.splitlines()[0]
        info["nvidia_smi"] = dict(zip(NVIDIA_SMI_FIELDS, (v.strip() for v in text.split(",")), strict=False))
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        info["nvidia_smi_error"] = str(exc)
    status, value = worker.call("info", timeout=120)
    info["tvm_device"] = value if status == "ok" else {"error": value}
    return info


def measure_group(worker: WorkerProcess, bundle: str, spec: dict, items: list[dict], args, rng,
                  flush_bytes: int, results: dict) -> None:
    def setup() -> bool:
        ref = spec.get("reference")
        status, value = worker.call("workload", timeout=max(args.timeout, 120), arg_specs=spec["arg_specs"],
                                    seed=args.seed, reference=os.path.join(bundle, ref) if ref else None)
        if status != "ok":
            print(f"reference failed: {value}", file=sys.stderr)
            status, value = worker.call("workload", timeout=max(args.timeout, 120),
                                        arg_specs=spec["arg_specs"], seed=args.seed, reference=None)
        return status == "ok" and bool(value["reference"])

    has_ref = setup()
    live = []
    for c in items:
        r = results[c["key"]] = {"status": "ok", "latencies_s": [], "error": None, "checked": False}
        status, value = worker.call("load", key=c["key"], lib=os.path.join(bundle, c["lib"]),
                                    warmup=args.warmup, min_repeat_ms=args.min_repeat_ms)
        if status != "ok":
            r.update(status=status, error=f"load: {value}")
            has_ref = setup()  # the worker may be gone: reload inputs (and the modules loaded so far)
            for k in live:
                worker.call("load", key=k["key"], lib=os.path.join(bundle, k["lib"]), warmup=0,
                            min_repeat_ms=args.min_repeat_ms)
            continue
        live.append(c)
    for _ in range(args.rounds):
        for c in rng.sample(live, len(live)):
            r = results[c["key"]]
            if r["status"] != "ok":
                continue
            status, value = worker.call("time", key=c["key"], repeats=args.repeats, flush_bytes=flush_bytes)
            if status == "ok":
                r["latencies_s"] += value["latencies_s"]
                continue
            r.update(status=status, error=f"time: {value}")
            has_ref = setup()
            for k in live:
                if results[k["key"]]["status"] == "ok":
                    worker.call("load", key=k["key"], lib=os.path.join(bundle, k["lib"]), warmup=0,
                                min_repeat_ms=args.min_repeat_ms)
    if has_ref and not args.no_check:
        for c in live:
            r = results[c["key"]]
            if r["status"] == "ok":
                status, value = worker.call("check", key=c["key"], rtol=args.rtol, atol=args.atol)
                if status == "ok":
                    r["checked"] = True
                    if not value["match"]:
                        r.update(status="wrong_result", error=f"max abs error {value['max_abs_error']:.3g}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    manifest = read_manifest(args.bundle)
    groups = plan(manifest, args.limit)
    os.makedirs(args.out, exist_ok=True)
    worker = WorkerProcess(args.timeout)
    started = time.time()
    try:
        device = device_info(worker)
        with open(os.path.join(args.out, "device.json"), "w") as handle:
            json.dump(device, handle, indent=1)
        l2 = int(device.get("tvm_device", {}).get("l2_cache_size_bytes") or 0) or 64 * 2**20
        flush_bytes = 2 * l2 if args.l2_flush else 0
        rng = random.Random(args.seed)
        results: dict[str, dict] = {}
        for i, (wid, items) in enumerate(groups.items()):
            spec = manifest["workloads"][wid]
            print(f"[{i + 1}/{len(groups)}] {spec['task_name']}: {len(items)} kernels", file=sys.stderr, flush=True)
            measure_group(worker, args.bundle, spec, items, args, rng, flush_bytes, results)
    finally:
        worker.kill()
    protocol = {k: getattr(args, k) for k in ("rounds", "repeats", "min_repeat_ms", "warmup", "l2_flush",
                                              "timeout", "rtol", "atol", "seed")}
    protocol["device"] = "cuda"
    summary = {"format": 1, "bundle": os.path.basename(os.path.abspath(args.bundle)), "protocol": protocol,
               "seconds": round(time.time() - started, 1), "results": results}
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump(summary, handle)
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"{len(results)} kernels in {summary['seconds']} s: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker_main()
    else:
        sys.exit(main())
