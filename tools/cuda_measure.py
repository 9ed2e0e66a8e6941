#!/usr/bin/env python3
"""Time a CUDA kernel bundle on the GPU of this machine (step 2 of a GPU dataset; runs on the lent
device with runtime-only TVM: stdlib + numpy + `tvm`, no cwm_bench).

    TVM_USE_RUNTIME_LIB=1 PYTHONPATH=RUNTIME/site python3 tools/cuda_measure.py BUNDLE... --out $OUT

Protocol, per workload of the bundles: a worker process loads every kernel (its cubin was compiled
at build time and is served to TVM's loader by source digest: the device compiles nothing), warms
it up and calibrates calls per timing; then `--rounds` interleaved rounds (kernel order shuffled
per round) take `--repeats` timings each with TVM's time_evaluator, which times CUDA devices with
CUDA events. By default (`--l2-flush`) the evaluator copies 2 x L2 bytes on the device before every
timing and times single calls (cold L2); `--no-l2-flush` times warm loops of `--min-repeat-ms`.
Kernels slower than `--kernel-budget-s` / rounds take fewer repeats (at least one per round).
Outputs are compared with the workload's reference kernel (same random inputs). A kernel that
hangs (`--timeout`) or crashes kills only the worker, which is restarted: its kernel is recorded as
`timeout` / `run_error`. `--deadline` stops before the next workload once that many seconds passed.
Writes OUT/device.json, then OUT/results.json (key -> status, latencies_s, error, checked) after
every workload, so a run cut short still returns what it measured. `--remeasure-fraction F` then
times a random share F of each workload's ok kernels again, in a new worker process and another
order, into OUT/remeasure.json: the two files give the dataset's noise ceiling (`cwm-bench noise`).
"""

from __future__ import annotations

import argparse
import hashlib
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
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundle folders (manifest.json, libs/, kernels/)")
    p.add_argument("--out", default=os.environ.get("OUT", "."), help="where results.json/device.json go")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="timings per kernel per round")
    p.add_argument("--min-repeat-ms", type=float, default=5.0, help="each warm timing loops this long")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls after loading")
    p.add_argument("--l2-flush", action=argparse.BooleanOptionalAction, default=True,
                   help="cold-L2 timings of single calls (default) or warm loops")
    p.add_argument("--kernel-budget-s", type=float, default=0.5,
                   help="timed seconds per kernel before repeats are cut (slow kernels)")
    p.add_argument("--deadline", type=float, default=0.0, help="seconds; 0: no deadline")
    p.add_argument("--remeasure-fraction", type=float, default=0.0,
                   help="then time this share of the ok kernels again in a fresh process (remeasure.json)")
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
    missing = [c["key"] for c in manifest["candidates"] if c.get("lib") and "device_binaries" not in c]
    if missing:
        raise SystemExit(f"{bundle}: built without device binaries (an older cwm-bench build-cuda); "
                         "rebuild it: the device would have to compile every kernel itself")
    return manifest


def plan(manifest: dict, limit: int = 0) -> dict[str, list[dict]]:
    """Built candidates grouped by workload, in manifest order."""
    groups: dict[str, list[dict]] = {}
    todo = [c for c in manifest["candidates"] if c.get("lib")]
    for c in todo[:limit] if limit else todo:
        groups.setdefault(c["workload_id"], []).append(c)
    return groups


# -- worker (a child process; all CUDA work happens here) ------------------------------------------
CUDART = "libcudart.so.13"  # what libtvm_runtime_cuda.so of apache-tvm 0.27 links against


def import_tvm_with_cuda():
    """`import tvm`, plus the CUDA runtime library that runtime-only mode does not load by itself
    (`TVM_USE_RUNTIME_LIB=1` skips tvm's built-in backends, so CUDA modules would not load).
    The CUDA runtime comes from the system when it has one, else from the runtime bundle."""
    import ctypes

    import tvm

    lib_dir = os.path.dirname(os.path.abspath(tvm.base._LOADED_LIBS["tvm_runtime"]._name))
    try:
        ctypes.CDLL(CUDART, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        if os.path.exists(os.path.join(lib_dir, CUDART)):
            ctypes.CDLL(os.path.join(lib_dir, CUDART), mode=ctypes.RTLD_GLOBAL)
    for name in ("libtvm_runtime_cuda.so", "libtvm_runtime_extra.so"):
        path = os.path.join(lib_dir, name)
        key = name[3:-3]
        if os.path.exists(path) and key not in tvm.base._LOADED_LIBS:
            tvm.base._LOADED_LIBS[key] = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    return tvm


def serve_device_binaries(kernel_dirs: list[str]) -> None:
    """Answer TVM's `tvm_callback_cuda_compile` (called when a library holds CUDA source) with the
    cubin compiled at build time for exactly that source; no compiler runs here."""
    import tvm_ffi

    def compiled(source: str) -> bytes:
        digest = hashlib.sha256(source.encode()).hexdigest()
        for folder in kernel_dirs:
            path = os.path.join(folder, f"{digest}.cubin")
            if os.path.exists(path):
                with open(path, "rb") as handle:
                    return handle.read()
        raise RuntimeError(f"no cubin for kernel source {digest[:16]} in {kernel_dirs}")

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", compiled, override=True)


class _Worker:
    def __init__(self):
        import numpy as np

        tvm = import_tvm_with_cuda()
        self.np, self.tvm, self.dev = np, tvm, tvm.cuda(0)
        self.kernel_dirs: list[str] = []
        serve_device_binaries(self.kernel_dirs)
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
        self.kernel_dirs[:] = req["kernel_dirs"]
        ref = req.get("reference")
        reference = self.tvm.runtime.load_module(ref) if ref else None
        self.reference = self._run(reference) if ref else None
        flush_error = None
        if reference is not None and req.get("flush_bytes"):
            try:  # TVM's evaluator flushes by a device copy; check it works here before relying on it
                reference.time_evaluator("main", self.dev, number=1, repeat=1,
                                         cache_flush_bytes=req["flush_bytes"])(*self.tensors)
            except Exception as exc:  # noqa: BLE001
                flush_error = f"{type(exc).__name__}: {exc}"[-500:]
        return {"reference": self.reference is not None, "flush_error": flush_error}

    def load(self, req: dict) -> dict:
        module = self.tvm.runtime.load_module(req["lib"])
        for _ in range(req["warmup"]):
            module["main"](*self.tensors)
        self.dev.sync()
        per_call = module.time_evaluator("main", self.dev, number=1, repeat=1,
                                         min_repeat_ms=max(1, round(req["min_repeat_ms"])))(*self.tensors).mean
        self.modules[req["key"]] = module
        self.numbers[req["key"]] = max(1, int(req["min_repeat_ms"] / 1000 / max(per_call, 1e-9) + 0.999))
        return {"per_call_s": per_call}

    def time(self, req: dict) -> dict:
        module = self.modules[req["key"]]
        flush = req["flush_bytes"]
        evaluator = module.time_evaluator("main", self.dev, number=1 if flush else self.numbers[req["key"]],
                                          repeat=req["repeats"], cache_flush_bytes=flush)
        # time_evaluator's first (untimed) call warms up: with a flush it runs once more per request
        return {"latencies_s": [float(x) for x in evaluator(*self.tensors).results]}

    def check(self, req: dict) -> dict:
        np = self.np
        worst, match = 0.0, True
        for expected, actual in zip(self.reference or [], self._run(self.modules[req["key"]]), strict=True):
            # atol scales with the output's magnitude: long float32 reductions summed in another
            # order differ by rounding that grows with the values, not with the schedule's quality
            scale = max(1.0, float(np.nanmax(np.abs(expected.astype("f8"))))) if expected.size else 1.0
            if not np.allclose(actual, expected, rtol=req["rtol"], atol=req["atol"] * scale, equal_nan=True):
                match = False
                worst = max(worst, float(np.nanmax(np.abs(actual.astype("f8") - expected.astype("f8")))))
        return {"match": match, "max_abs_error": worst}


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


class Session:
    """One run over several bundles: the worker, the protocol, and every result so far."""

    def __init__(self, args, flush_bytes: int):
        self.args = args
        self.worker = WorkerProcess(args.timeout)
        self.flush_bytes = flush_bytes
        self.flush_error: str | None = None
        self.rng = random.Random(args.seed)
        self.results: dict[str, dict] = {}

    def _setup(self, bundle: str, spec: dict) -> bool:
        """(Re)load the workload's inputs and reference in the worker; True if outputs can be checked."""
        ref = spec.get("reference")
        request = {"arg_specs": spec["arg_specs"], "seed": self.args.seed, "flush_bytes": self.flush_bytes,
                   "kernel_dirs": [os.path.join(bundle, "kernels")]}
        status, value = self.worker.call("workload", timeout=max(self.args.timeout, 120),
                                         reference=os.path.join(bundle, ref) if ref else None, **request)
        if status != "ok":
            print(f"reference failed: {value}", file=sys.stderr)
            status, value = self.worker.call("workload", timeout=max(self.args.timeout, 120), reference=None,
                                             **request)
        if status == "ok" and value.get("flush_error") and self.flush_bytes:
            # Cannot flush here: every later timing is warm, and the protocol says so.
            self.flush_error, self.flush_bytes = value["flush_error"], 0
            print(f"L2 flush unavailable, timing warm loops: {self.flush_error}", file=sys.stderr)
        return status == "ok" and bool(value["reference"])

    def _load(self, bundle: str, c: dict, warmup: int) -> tuple[str, object]:
        return self.worker.call("load", key=c["key"], lib=os.path.join(bundle, c["lib"]), warmup=warmup,
                                min_repeat_ms=self.args.min_repeat_ms)

    def _restart(self, bundle: str, spec: dict, live: list[dict]) -> bool:
        """After a failure the worker may be gone: reload inputs and the kernels still measured."""
        has_ref = self._setup(bundle, spec)
        for c in live:
            if self.results[c["key"]]["status"] == "ok":
                self._load(bundle, c, warmup=0)
        return has_ref

    def repeats_for(self, per_call_s: float) -> int:
        """Repeats per round: the kernel's timed total stays near --kernel-budget-s."""
        fit = int(self.args.kernel_budget_s / max(per_call_s, 1e-9) / self.args.rounds)
        return max(1, min(self.args.repeats, fit))

    def measure_group(self, bundle: str, spec: dict, items: list[dict]) -> None:
        args, results = self.args, self.results
        has_ref = self._setup(bundle, spec)
        live, per_call = [], {}
        for c in items:
            r = results[c["key"]] = {"status": "ok", "latencies_s": [], "error": None, "checked": False}
            status, value = self._load(bundle, c, warmup=args.warmup)
            if status != "ok":
                r.update(status=status, error=f"load: {value}")
                has_ref = self._restart(bundle, spec, live)
                continue
            per_call[c["key"]] = value["per_call_s"]
            live.append(c)
        for _ in range(args.rounds):
            for c in self.rng.sample(live, len(live)):
                r = results[c["key"]]
                if r["status"] != "ok":
                    continue
                status, value = self.worker.call("time", key=c["key"], repeats=self.repeats_for(per_call[c["key"]]),
                                                 flush_bytes=self.flush_bytes)
                if status == "ok":
                    r["latencies_s"] += value["latencies_s"]
                    continue
                r.update(status=status, error=f"time: {value}")
                has_ref = self._restart(bundle, spec, live)
        if has_ref and not args.no_check:
            for c in live:
                r = results[c["key"]]
                if r["status"] == "ok":
                    status, value = self.worker.call("check", key=c["key"], rtol=args.rtol, atol=args.atol)
                    if status == "ok":
                        r["checked"] = True
                        if not value["match"]:
                            r.update(status="wrong_result", error=f"max abs error {value['max_abs_error']:.3g}")

    def protocol(self) -> dict:
        keys = ("rounds", "repeats", "min_repeat_ms", "warmup", "kernel_budget_s", "timeout", "rtol", "atol", "seed")
        protocol = {k: getattr(self.args, k) for k in keys}
        protocol.update(device="cuda", l2_flush=bool(self.flush_bytes), l2_flush_bytes=self.flush_bytes,
                        timer="tvm time_evaluator (CUDA events)", kernels="cubin compiled at build time")
        if self.flush_error:
            protocol["l2_flush_error"] = self.flush_error
        return protocol


def write_json(path: str, value) -> None:
    with open(path + ".partial", "w") as handle:
        json.dump(value, handle)
    os.replace(path + ".partial", path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = [(bundle, read_manifest(bundle)) for bundle in args.bundles]
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    session = Session(args, flush_bytes=0)
    try:
        device = device_info(session.worker)
        write_json(os.path.join(args.out, "device.json"), device)
        if "error" in device["tvm_device"]:
            print(f"no CUDA device through TVM: {device['tvm_device']['error']}", file=sys.stderr)
            return 2
        l2 = int(device["tvm_device"].get("l2_cache_size_bytes") or 0) or 64 * 2**20
        session.flush_bytes = 2 * l2 if args.l2_flush else 0
        per_bundle = [[(bundle, manifest["workloads"][wid], items) for wid, items in plan(manifest, args.limit).items()]
                      for bundle, manifest in work]
        # Round-robin over bundles: a run cut by --deadline still covers tasks of every bundle.
        groups = [g for i in range(max(map(len, per_bundle), default=0)) for b in per_bundle if i < len(b)
                  for g in [b[i]]]
        run_pass(session, groups, os.path.join(args.out, "results.json"), started)
        session.worker.kill()
        if args.remeasure_fraction > 0:
            again = Session(args, flush_bytes=session.flush_bytes)
            again.rng = random.Random(args.seed + 1)  # another order; same inputs
            sample = random.Random(args.seed + 2)
            subsets = []
            for bundle, spec, items in groups:
                ok = [c for c in items if session.results.get(c["key"], {}).get("status") == "ok"]
                subsets.append((bundle, spec, sample.sample(ok, round(len(ok) * min(1.0, args.remeasure_fraction)))))
            try:
                run_pass(again, [g for g in subsets if g[2]], os.path.join(args.out, "remeasure.json"), started,
                         label="re-measure ")
            finally:
                again.worker.kill()
    finally:
        session.worker.kill()
    return 0


def run_pass(session: Session, groups: list, out_path: str, started: float, label: str = "") -> None:
    """Measure every group (workload) until the deadline; rewrite `out_path` after each."""
    args, skipped = session.args, 0
    for i, (bundle, spec, items) in enumerate(groups):
        if args.deadline and time.time() - started > args.deadline:
            skipped = sum(len(items) for _, _, items in groups[i:])
            print(f"{label}deadline: {len(groups) - i} workloads ({skipped} kernels) left unmeasured", file=sys.stderr)
            break
        t0 = time.time()
        session.measure_group(bundle, spec, items)
        ok = sum(session.results[c["key"]]["status"] == "ok" for c in items)
        print(f"{label}[{i + 1}/{len(groups)}] {spec['task_name']}: {ok}/{len(items)} ok in {time.time() - t0:.1f} s "
              f"({time.time() - started:.0f} s total)", file=sys.stderr, flush=True)
        write_json(out_path, summary(args, session, started, skipped))
    write_json(out_path, summary(args, session, started, skipped))
    counts: dict[str, int] = {}
    for r in session.results.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"{label}{len(session.results)} kernels in {time.time() - started:.1f} s: {counts}", file=sys.stderr)


def summary(args, session: Session, started: float, skipped: int) -> dict:
    return {"format": 1, "bundles": [os.path.basename(os.path.abspath(b)) for b in args.bundles],
            "protocol": session.protocol(), "seconds": round(time.time() - started, 1),
            "unmeasured": skipped, "results": session.results}


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker_main()
    else:
        sys.exit(main())
