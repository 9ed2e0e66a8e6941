"""Records per hour when measuring on 1 vs 2 TVM RPC servers (loopback), side by side in one run.

    .venv/bin/python benchmarks/rpc_throughput.py [--per-task 32] [--batch-size 16]

Each configuration collects the same tasks with the same seed into a fresh folder: this machine
measuring locally (pipelined, on its last core), then through a tracker with 1 server (serial, then
pipelined), then with 2 servers (pipelined). Every server (and the local run) times kernels on 1
thread, so a server stands for a 1-core device and the runs time the same programs the same way.
Printed: records/hour, the stage wall times (search, build and measure overlap when pipelined), and
the ratio to 1 pipelined server. The loopback servers share this machine's cores with the search
and builds, so on a machine with few cores the total CPU work, not the number of servers, bounds
the rate: the script prints that bound too.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

WORKLOADS = "mini:matmul_64x64x64,conv2d_14x32x32_k3,depthwise_28x32_k3"


def run(label: str, per_task: int, batch_size: int, work: str, servers: int | None, overlap: bool) -> dict:
    from cwm_bench.collect import CollectConfig, Collector
    from cwm_bench.hardware import detect_cpu
    from cwm_bench.measure.loopback import LoopbackCluster
    from cwm_bench.measure.rpc import RpcConfig
    from cwm_bench.rows.store import DatasetStore
    from cwm_bench.workload.suites import select_workloads

    hardware = detect_cpu(num_cores=1)
    workloads = select_workloads(WORKLOADS)
    cluster = LoopbackCluster(servers=servers, key="bench", threads_per_server=1).start() if servers else None
    try:
        rpc = RpcConfig(cluster.tracker, "bench") if cluster else None
        local_core = None if rpc else (sorted(os.sched_getaffinity(0))[-1],)
        config = CollectConfig(per_task=per_task, batch_size=batch_size, rpc=rpc, overlap=overlap,
                               measure_cores=local_core)
        collector = Collector(hardware, f"{work}/{label}", config, log=lambda _: None)
        cpu_before, started = _cpu_seconds(), time.perf_counter()
        collector.run(workloads)
        wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_before
    finally:
        if cluster:
            cluster.close()
    statuses = DatasetStore(f"{work}/{label}", readonly=True).read("records", ["status"]).column("status")
    ok = sum(1 for s in statuses.to_pylist() if s == "ok")
    stages = dict(collector.stage_seconds)
    return {"label": label, "records": len(statuses), "ok": ok, "wall_s": wall, "per_hour": ok / wall * 3600,
            **{k: stages.get(k, 0.0) for k in ("search", "build", "measure")}, "cpu_s": cpu}


def _cpu_seconds() -> float:
    """Busy CPU time of the whole machine so far (/proc/stat): the collector, its builders, the servers
    and their session processes. Run the benchmark with nothing beside it."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-task", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    from cwm_bench.hardware import detect_cpu

    cpu = detect_cpu()
    print(f"machine: {cpu.name} ({cpu.arch}, {cpu.num_cores} cores), {platform.platform()}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    with tempfile.TemporaryDirectory(prefix="cwm-rpc-bench-") as work:
        rows = [run(label, args.per_task, args.batch_size, work, servers, overlap)
                for label, servers, overlap in [("local-pipelined", None, True), ("rpc-1-serial", 1, False),
                                                ("rpc-1-pipelined", 1, True), ("rpc-2-pipelined", 2, True)]]
    one = rows[2]["per_hour"]
    print(f"tasks: {WORKLOADS}, {args.per_task} records each, batch {args.batch_size}; kernels on 1 thread")
    print(f"{'run':<16} {'ok':>4} {'wall s':>7} {'ok rec/h':>9} {'search s':>9} {'build s':>8} {'measure s':>10} "
          f"{'cpu s':>6} {'vs rpc-1-pipelined':>18}")
    for r in rows:
        print(f"{r['label']:<16} {r['ok']:>4} {r['wall_s']:>7.1f} {r['per_hour']:>9.0f} {r['search']:>9.1f} "
              f"{r['build']:>8.1f} {r['measure']:>10.1f} {r['cpu_s']:>6.0f} {r['per_hour'] / one:>17.2f}x")
    m1, m2 = rows[2]["measure"], rows[3]["measure"]
    print(f"measure stage, 1 -> 2 servers: {m1:.1f} s -> {m2:.1f} s ({m1 / max(m2, 1e-9):.2f}x faster)")
    two = rows[3]
    print(f"2 servers / 1 server, whole collection: {two['per_hour'] / one:.2f}x; on {cpu.num_cores} cores the "
          f"2-server collection kept the machine busy for {two['cpu_s']:.0f} CPU-s (search, builds, both servers), "
          f"so it could not take less than {two['cpu_s'] / cpu.num_cores:.0f} s wall here (it took "
          f"{two['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
