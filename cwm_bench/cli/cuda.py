"""GPU datasets: build CUDA candidates here, measure them on a GPU machine, ingest the results."""

from __future__ import annotations

import click

from cwm_bench.cli import main

CUDA_FLOW = """GPU datasets are collected in three steps (no GPU is needed here; see docs/cuda.md):
  1. cwm-bench build-cuda --workloads mini --gpu h100 --per-task 32 --out .cuda/bundles
  2. on the GPU machine: tools/cuda_measure.py BUNDLE --out $OUT   (runtime-only TVM, tools/make_runtime_bundle.py)
  3. cwm-bench ingest-cuda BUNDLE results.json device.json --out DATA_DIR"""


@main.command("build-cuda")
@click.option("--workloads", "suite", default="mini", show_default=True, help="A suite, optionally filtered.")
@click.option("--gpu", type=click.Choice(["h100", "h200"]), default="h100", show_default=True)
@click.option("--per-task", default=32, show_default=True, help="Random candidates per task.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for bundle-000, bundle-001, ...")
@click.option("--seed", default=0, show_default=True)
@click.option("--max-bundle-mb", default=32.0, show_default=True, help="Libraries per bundle before a new one.")
@click.option("--build-workers", default=None, type=int, help="Parallel compiles (default: one per core).")
def build_cuda(suite: str, gpu: str, per_task: int, out_dir: str, seed: int, max_bundle_mb: float,
               build_workers: int | None) -> None:
    """Step 1 of a GPU dataset: draw random CUDA candidates and compile them into bundles."""
    from cwm_bench.cuda.build import build_cuda_bundle
    from cwm_bench.hardware import GPU_PRESETS
    from cwm_bench.workload.suites import UnknownSuiteError, select_workloads

    try:
        chosen = select_workloads(suite, "cuda")
    except UnknownSuiteError as exc:
        raise click.BadParameter(str(exc), param_hint="--workloads") from exc
    bundles = build_cuda_bundle(chosen, GPU_PRESETS[gpu], out_dir, per_task, seed=seed,
                                max_bundle_mb=max_bundle_mb, build_workers=build_workers)
    click.echo("bundles: " + " ".join(bundles))


@main.command("ingest-cuda")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.argument("results_json", type=click.Path(exists=True, dir_okay=False))
@click.argument("device_json", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Dataset folder.")
def ingest_cuda_cmd(bundle: str, results_json: str, device_json: str, out_dir: str) -> None:
    """Step 3 of a GPU dataset: add a bundle's device measurements to a dataset folder."""
    from cwm_bench.cuda.ingest import ingest_cuda

    report = ingest_cuda(bundle, results_json, device_json, out_dir)
    click.echo(f"{report.rows} records added to {out_dir} {report.by_status}"
               + (f"; {report.unmeasured} built candidates had no result" if report.unmeasured else ""))
