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
Kernels slower than `--kernel-budget-s` / (rounds x repeats) take fewer repeats (at least one a
round). A workload's kernels are grouped across bundles, so they share the interleaved rounds.
Outputs are compared with the workload's reference kernel (same random inputs). A kernel that
hangs (`--timeout`) or crashes kills only the worker, which is restarted: its kernel is recorded as
`timeout` / `run_error`. `--deadline` stops before the next workload once that many seconds passed.
Writes OUT/device.json, then OUT/results.json (key -> status, latencies_s, error, checked) after
every workload, so a run cut short still returns what it measured. `--remeasure-fraction F` then
times a random share F of each workload's ok kernels again, in a new worker process and another
order, into OUT/remeasure.json: the two files give the dataset's two-run agreement and estimated
oracle accuracy (`cwm-bench noise`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

from cuda_worker import WorkerProcess  # beside this script: python puts tools/ on sys.path
from pack_for_device import bundle_name

NVIDIA_SMI_FIELDS = ("name", "uuid", "memory.total", "clocks.max.sm", "clocks.max.memory", "clocks.sm",
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


MAX_RESTARTS = 3  # worker restarts per workload before its remaining kernels are given up


class Session:
    """One run over several bundles: the worker, the protocol, and every result so far.

    A group is one workload: its spec (with `bundle`, where its reference lives) and its kernels
    (each with `bundle`), gathered across bundles so that all of a task's kernels share rounds."""

    def __init__(self, args, flush_bytes: int):
        self.args = args
        self.worker = WorkerProcess(args.timeout)
        self.flush_bytes = flush_bytes
        self.flush_requested = flush_bytes > 0
        self.flush_error: str | None = None
        self.rng = random.Random(args.seed)
        self.results: dict[str, dict] = {}

    def _setup(self, spec: dict, items: list[dict]) -> tuple[bool, str | None]:
        """(Re)load the workload's inputs and reference in the worker.
        Returns (outputs can be checked, error if the workload cannot be set up at all)."""
        ref = spec.get("reference")
        dirs = sorted({os.path.join(b, "kernels") for b in [spec["bundle"], *(c["bundle"] for c in items)]})
        request = {"arg_specs": spec["arg_specs"], "seed": self.args.seed, "flush_bytes": self.flush_bytes,
                   "kernel_dirs": dirs}
        status, value = self.worker.call("workload", timeout=max(self.args.timeout, 120),
                                         reference=os.path.join(spec["bundle"], ref) if ref else None, **request)
        if status != "ok":
            print(f"{spec['task_name']}: reference failed: {value}", file=sys.stderr)
            self.worker.kill()  # whatever failed may have poisoned the CUDA context
            status, value = self.worker.call("workload", timeout=max(self.args.timeout, 120), reference=None,
                                             **request)
            if status != "ok":
                return False, f"setup: {value}"
        if value.get("flush_error") and self.flush_bytes:
            # Cannot flush here: every later timing is a warm loop, and the protocol says from where.
            self.flush_error, self.flush_bytes = value["flush_error"], 0
            self.flush_off_from = spec["task_name"]
            print(f"L2 flush unavailable, timing warm loops: {self.flush_error}", file=sys.stderr)
        return bool(value["reference"]), None

    def _load(self, c: dict, warmup: int) -> tuple[str, object]:
        return self.worker.call("load", key=c["key"], lib=os.path.join(c["bundle"], c["lib"]), warmup=warmup,
                                min_repeat_ms=self.args.min_repeat_ms)

    def _fail(self, c: dict, status: str, error: str) -> None:
        self.results[c["key"]].update(status=status, error=error[-2000:])

    def _restart(self, spec: dict, items: list[dict], live: list[dict], restarts: list[int]) -> bool:
        """After a failure: a fresh worker (a CUDA error poisons the context of the process that saw it)
        with the inputs and every kernel still ok reloaded. Returns whether outputs can be checked."""
        self.worker.kill()
        restarts[0] += 1
        error = f"gave up after {MAX_RESTARTS} worker restarts in this workload" if restarts[0] > MAX_RESTARTS else None
        has_ref = False
        if error is None:
            has_ref, error = self._setup(spec, items)
        # on success reload what is loaded and still ok; on failure give up every kernel still ok
        ok = [c for c in (items if error else live) if self.results[c["key"]]["status"] == "ok"]
        for c in ok:
            status, value = ("run_error", error) if error else self._load(c, warmup=0)
            if status != "ok":
                self._fail(c, status, f"reload: {value}")
        return has_ref

    def repeats_for(self, per_call_s: float) -> int:
        """Repeats per round: the kernel's timed total stays near --kernel-budget-s."""
        fit = int(self.args.kernel_budget_s / max(per_call_s, 1e-9) / self.args.rounds)
        return max(1, min(self.args.repeats, fit))

    def measure_group(self, spec: dict, items: list[dict]) -> None:
        args, results = self.args, self.results
        for c in items:
            results[c["key"]] = {"status": "ok", "latencies_s": [], "error": None, "checked": False}
        has_ref, error = self._setup(spec, items)
        if error:
            for c in items:
                self._fail(c, "run_error", error)
            return
        live, per_call, restarts = [], {}, [0]
        for c in items:
            if results[c["key"]]["status"] != "ok":
                continue  # given up by a restart
            status, value = self._load(c, warmup=args.warmup)
            if status != "ok":
                self._fail(c, status, f"load: {value}")
                has_ref = self._restart(spec, items, live, restarts)
                continue
            per_call[c["key"]] = value["per_call_s"]
            live.append(c)
        for _ in range(args.rounds):
            for c in self.rng.sample(live, len(live)):
                if results[c["key"]]["status"] != "ok":
                    continue
                status, value = self.worker.call("time", key=c["key"], repeats=self.repeats_for(per_call[c["key"]]),
                                                 flush_bytes=self.flush_bytes)
                if status == "ok":
                    results[c["key"]]["latencies_s"] += value["latencies_s"]
                    continue
                self._fail(c, status, f"time: {value}")
                has_ref = self._restart(spec, items, live, restarts)
        if not has_ref or args.no_check:
            return
        for c in live:
            r = results[c["key"]]
            if r["status"] != "ok":
                continue
            status, value = self.worker.call("check", key=c["key"], rtol=args.rtol, atol=args.atol)
            if status != "ok":  # it crashed or hung on fresh inputs: not an ok kernel
                self._fail(c, status, f"check: {value}")
                if not self._restart(spec, items, live, restarts):
                    return
                continue
            r["checked"] = True
            if not value["match"]:
                r.update(status="wrong_result", error=f"max abs error {value['max_abs_error']:.3g} "
                                                      f"(allowed {value.get('allowed', '?')})")

    def protocol(self) -> dict:
        keys = ("rounds", "repeats", "min_repeat_ms", "warmup", "kernel_budget_s", "timeout", "rtol", "atol", "seed")
        protocol = {k: getattr(self.args, k) for k in keys}
        protocol.update(device="cuda", l2_flush=self.flush_requested, l2_flush_bytes=self.flush_bytes,
                        timer="tvm time_evaluator (CUDA events)", kernels="cubin compiled at build time")
        if self.flush_error:  # timings before that workload were flushed, later ones warm loops
            protocol.update(l2_flush_error=self.flush_error, l2_flush_off_from=self.flush_off_from)
        return protocol


def workload_groups(work: list[tuple[str, dict]], limit: int = 0) -> list[tuple[dict, list[dict]]]:
    """(spec, kernels) per workload across all bundles, in first-seen order; every spec and kernel
    carries the `bundle` it came from. `--limit` counts per bundle."""
    groups: dict[str, tuple[dict, list[dict]]] = {}
    for bundle, manifest in work:
        for wid, items in plan(manifest, limit).items():
            spec = groups.setdefault(wid, (dict(manifest["workloads"][wid], bundle=bundle), []))
            spec[1].extend(dict(c, bundle=bundle) for c in items)
    return list(groups.values())


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
        groups = workload_groups(work, args.limit)
        run_pass(session, groups, os.path.join(args.out, "results.json"), started)
        session.worker.kill()
        if args.remeasure_fraction > 0:
            again = Session(args, flush_bytes=session.flush_bytes)
            again.rng = random.Random(args.seed + 1)  # another order; same inputs
            sample = random.Random(args.seed + 2)
            subsets = []
            for spec, items in groups:
                ok = [c for c in items if session.results.get(c["key"], {}).get("status") == "ok"]
                share = math.ceil(len(ok) * min(1.0, args.remeasure_fraction))  # a 1-kernel task counts too
                subsets.append((spec, sample.sample(ok, share)))
            try:
                run_pass(again, [g for g in subsets if g[1]], os.path.join(args.out, "remeasure.json"), started,
                         label="re-measure ")
            finally:
                again.worker.kill()
    finally:
        session.worker.kill()
    return 0


def run_pass(session: Session, groups: list, out_path: str, started: float, label: str = "") -> None:
    """Measure every group (workload) until the deadline; rewrite `out_path` after each."""
    args, skipped = session.args, 0
    for i, (spec, items) in enumerate(groups):
        if args.deadline and time.time() - started > args.deadline:
            skipped = sum(len(items) for _, items in groups[i:])
            print(f"{label}deadline: {len(groups) - i} workloads ({skipped} kernels) left unmeasured", file=sys.stderr)
            break
        t0 = time.time()
        session.measure_group(spec, items)
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
    return {"format": 1, "bundles": [bundle_name(b) for b in args.bundles],
            "protocol": session.protocol(), "seconds": round(time.time() - started, 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "unmeasured": skipped, "results": session.results}


if __name__ == "__main__":
    sys.exit(main())
