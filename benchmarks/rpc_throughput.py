"""Records per hour when measuring on 1 vs 2 TVM RPC servers (loopback), side by side in one run.

    .venv/bin/python benchmarks/rpc_throughput.py [--per-task 32] [--batch-size 16]

Each configuration collects the same tasks with the same seed into a fresh folder: this machine
measuring locally, then through a tracker with 1 server, then with 2 servers. Every server (and the
local run) times kernels on 1 thread, so a server stands for a 1-core device and the runs time the
same programs the same way. Printed: records/hour, where the wall time went (search, build, measure),
and the ratio to 1 server. Builds stay on the collector and do not overlap measurement, so extra
servers shrink only the measure stage; on a 2-core machine the servers also share the cores that
build, which bounds the gain further.
"""

from __future__ import annotations

import argparse
import tempfile
import time

WORKLOADS = "mini:matmul_64x64x64,conv2d_14x32x32_k3,depthwise_28x32_k3"


def run(label: str, per_task: int, batch_size: int, work: str, servers: int | None) -> dict:
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
        collector = Collector(hardware, f"{work}/{label}", CollectConfig(per_task=per_task, batch_size=batch_size,
                                                                         rpc=rpc), log=lambda _: None)
        started = time.perf_counter()
        collector.run(workloads)
        wall = time.perf_counter() - started
    finally:
        if cluster:
            cluster.close()
    statuses = DatasetStore(f"{work}/{label}", readonly=True).read("records", ["status"]).column("status")
    ok = sum(1 for s in statuses.to_pylist() if s == "ok")
    stages = dict(collector.stage_seconds)
    return {"label": label, "records": len(statuses), "ok": ok, "wall_s": wall, "per_hour": ok / wall * 3600,
            **{k: stages.get(k, 0.0) for k in ("search", "build", "measure")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-task", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cwm-rpc-bench-") as work:
        rows = [run("local", args.per_task, args.batch_size, work, None),
                run("rpc-1-server", args.per_task, args.batch_size, work, 1),
                run("rpc-2-servers", args.per_task, args.batch_size, work, 2)]
    one = rows[1]["per_hour"]
    print(f"tasks: {WORKLOADS}, {args.per_task} records each, batch {args.batch_size}; kernels on 1 thread")
    print(f"{'run':<14} {'ok':>4} {'wall s':>7} {'ok rec/h':>9} {'search s':>9} {'build s':>8} {'measure s':>10} "
          f"{'vs 1 server':>11}")
    for r in rows:
        print(f"{r['label']:<14} {r['ok']:>4} {r['wall_s']:>7.1f} {r['per_hour']:>9.0f} {r['search']:>9.1f} "
              f"{r['build']:>8.1f} {r['measure']:>10.1f} {r['per_hour'] / one:>10.2f}x")
    m1, m2 = rows[1]["measure"], rows[2]["measure"]
    print(f"measure stage, 1 -> 2 servers: {m1:.1f} s -> {m2:.1f} s ({m1 / max(m2, 1e-9):.2f}x faster)")


if __name__ == "__main__":
    main()
