"""GPU datasets: build CUDA candidates here, measure them on a GPU machine, ingest the results."""

from __future__ import annotations

import click

from cwm_bench.cli import main
from cwm_bench.hardware import GPU_PRESETS  # no TVM at import: keeps `cwm-bench --help` fast

CUDA_FLOW = """Without a GPU here: time on GPU servers of a TVM RPC tracker (kernels arrive compiled to cubins),
  cwm-bench collect --target cuda --rpc-tracker HOST:PORT --device-key KEY --out DATA_DIR
or, for a GPU machine no tracker reaches, in three steps (see docs/cuda.md):
  1. cwm-bench build-cuda --workloads mini --gpu h100 --per-task 32 --out .cuda/bundles
  2. tools/make_runtime_bundle.py; tools/pack_for_device.py BUNDLE...; on the GPU machine:
     bash tools/cuda_device_run.sh .cuda/payload $OUT   (runtime-only TVM, no compiler there)
  3. cwm-bench ingest-cuda BUNDLE... --results results.json --device device.json --out DATA_DIR"""


@main.command("build-cuda")
@click.option("--workloads", "suite", default="mini", show_default=True, help="A suite, optionally filtered.")
@click.option("--gpu", type=click.Choice(list(GPU_PRESETS)), default="h100", show_default=True,
              help="The GPU preset to build for (cwm_bench.hardware.GPU_PRESETS).")
@click.option("--per-task", default=32, show_default=True, help="Random candidates per task.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for bundle-000, bundle-001, ...")
@click.option("--seed", default=0, show_default=True)
@click.option("--max-bundle-mb", default=32.0, show_default=True, help="Libraries per bundle before a new one.")
@click.option("--build-workers", default=None, type=int, help="Parallel compiles (default: one per core).")
@click.option("--shard", default="0/1", show_default=True, metavar="I/N",
              help="Build only every N-th task starting at I (run N processes with separate --out folders "
                   "to use every core: candidate sampling runs in the main process).")
@click.option("--from", "from_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="A dataset folder this GPU architecture has measured (ingest-cuda output): build the next "
                   "round, evolutionary candidates from MetaSchedule's search with XGB trained on its records.")
def build_cuda(suite: str, gpu: str, per_task: int, out_dir: str, seed: int, max_bundle_mb: float,
               build_workers: int | None, shard: str, from_dir: str | None) -> None:
    """Step 1 of a GPU dataset: draw CUDA candidates and compile them (host library + cubin, with nvcc;
    no GPU needed) into bundles of at most --max-bundle-mb each. Round 1 is random candidates; with
    --from DATA_DIR, the next round is evolutionary, seeded with what DATA_DIR measured."""
    from cwm_bench.cuda.build import build_cuda_bundle
    from cwm_bench.workload.suites import UnknownSuiteError, select_workloads

    index, _, count = shard.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise click.BadParameter(f"expected I/N with 0 <= I < N, got {shard!r}", param_hint="--shard")
    try:
        chosen = select_workloads(suite, "cuda")
    except UnknownSuiteError as exc:
        raise click.BadParameter(str(exc), param_hint="--workloads") from exc
    chosen = chosen[int(index)::int(count)]
    try:
        bundles = build_cuda_bundle(chosen, GPU_PRESETS[gpu], out_dir, per_task, seed=seed,
                                    max_bundle_mb=max_bundle_mb, build_workers=build_workers, from_dir=from_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("bundles: " + " ".join(bundles))


@main.command("ingest-cuda")
@click.argument("bundles", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--results", "results_json", required=True, type=click.Path(exists=True, dir_okay=False),
              help="results.json (or remeasure.json) written by tools/cuda_measure.py.")
@click.option("--device", "device_json", required=True, type=click.Path(exists=True, dir_okay=False),
              help="device.json written beside it.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
def ingest_cuda_cmd(bundles: tuple[str, ...], results_json: str, device_json: str, out_dir: str) -> None:
    """Step 3 of a GPU dataset: add the bundles' device measurements to a dataset folder.

    Idempotent: records already in the folder are skipped. Built candidates the device did not reach
    (a run stopped by its --deadline) are left out and counted; ingest them after another run."""
    from cwm_bench.cuda.ingest import ingest_cuda
    from cwm_bench.rows.store import DatasetBusyError

    for bundle in bundles:
        try:
            report = ingest_cuda(bundle, results_json, device_json, out_dir)
        except (ValueError, DatasetBusyError) as exc:  # integrity, bad rows, a busy --out: one line
            raise click.ClickException(f"{bundle}: {exc}") from exc
        click.echo(f"{bundle}: {report.rows} records added to {out_dir} {report.by_status}"
                   + (f"; {report.unmeasured} built candidates had no result" if report.unmeasured else ""))
