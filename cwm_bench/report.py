"""Human-readable summaries of collected data."""

from __future__ import annotations

from cwm_bench.rows.schema import STATUSES


def summary_table(summaries) -> str:
    """One line per task: record counts by status, best latency and its GFLOP/s."""
    header = f"{'task':<36} {'ok':>5} {'errors':>6}  {'best latency':>12}  {'GFLOP/s':>8}"
    lines = [header, "-" * len(header)]
    for s in summaries:
        errors = sum(v for k, v in s.counts.items() if k != "ok")
        best = f"{s.best_latency_s * 1e6:>10.1f}us" if s.best_latency_s else f"{'-':>12}"
        gflops = f"{s.gflops:>8.1f}" if s.gflops else f"{'-':>8}"
        lines.append(f"{s.workload.task_name[:36]:<36} {s.counts.get('ok', 0):>5} {errors:>6}  {best}  {gflops}")
    totals = {k: sum(s.counts.get(k, 0) for s in summaries) for k in STATUSES}
    lines.append("-" * len(header))
    lines.append("total: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    return "\n".join(lines)
