"""Commands that turn collections into releases: remeasure, noise, release, card, publish."""

from __future__ import annotations

import sys

import click

from cwm_bench.cli import main


@main.command("remeasure")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="New dataset folder (same record ids, this machine's hardware). An existing one is resumed.")
@click.option("--target", "target_kind", type=click.Choice(["llvm", "cuda"]), default="llvm", show_default=True,
              help="llvm: this machine's CPU (mcpu detected). cuda: see the README's GPU section.")
@click.option("--sample-fraction", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Below 1: a seeded random sample of each task's ok records (every task keeps at least one).")
@click.option("--max-tasks", type=click.IntRange(min=1), default=None,
              help="Only this many of SOURCE's tasks, all their records, picked by a seeded hash of the workload "
                   "id (the same --seed: a larger N picks a superset) [default: every task].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seeds the sample, the tasks of --max-tasks and the measurement order.")
@click.option("--rounds", type=click.IntRange(min=1), default=None,
              help="Interleaved measurement rounds [default: the source's].")
@click.option("--repeats", type=click.IntRange(min=1), default=None,
              help="Timings per candidate per round [default: the source's].")
@click.option("--min-repeat-ms", type=click.IntRange(min=0), default=None,
              help="Each timing loops the kernel this long [default: the source's].")
@click.option("--check-fraction", type=click.FloatRange(0.0, 1.0), default=None,
              help="Share of candidates whose outputs are checked [default: the source's].")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Seconds per load or round before a kernel is a `timeout` [default: the source's].")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs only).")
def remeasure_cmd(source: str, out_dir: str, target_kind: str, sample_fraction: float, max_tasks: int | None,
                  seed: int, rounds: int | None, repeats: int | None, min_repeat_ms: int | None,
                  check_fraction: float | None, timeout_s: float | None, no_progress: bool) -> None:
    """Replay SOURCE's traces on this machine, measure them again, and write a new dataset.

    Ports the benchmark to new hardware, or, on the same machine at a later time, gives the
    second run for `cwm-bench noise`. The protocol is the source's own unless overridden.
    Resumable like `collect`; a trace that fails to replay is reported and skipped.
    """
    import os

    from tqdm import tqdm

    if target_kind == "cuda":
        raise click.UsageError("re-measuring on a GPU is not supported yet; GPU datasets are built with "
                               "`cwm-bench build-cuda` and measured on the GPU machine (docs/cuda.md).")
    if os.path.realpath(source) == os.path.realpath(out_dir):
        raise click.BadParameter("must be a new folder, not the source", param_hint="--out")
    from cwm_bench.hardware import detect_cpu
    from cwm_bench.remeasure import RemeasureConfig, remeasure
    from cwm_bench.rows.store import DATASET_ERRORS

    overrides = {k: v for k, v in {"rounds": rounds, "repeats_per_round": repeats, "min_repeat_ms": min_repeat_ms,
                                   "check_fraction": check_fraction, "timeout_s": timeout_s}.items() if v is not None}
    config = RemeasureConfig(sample_fraction=sample_fraction, seed=seed, protocol_overrides=overrides,
                             max_tasks=max_tasks)
    hardware = detect_cpu()
    click.echo(f"hardware: {hardware.name} ({hardware.arch}, {hardware.num_cores} cores), hw_id {hardware.hw_id}")
    bar = tqdm(total=0, unit="rec", disable=no_progress, dynamic_ncols=True)

    def set_total(n: int) -> None:
        bar.total = n
        bar.refresh()
        click.echo(f"{n} records to measure into {out_dir}", err=True)

    try:
        report = remeasure(source, out_dir, hardware, config, on_records=bar.update, on_total=set_total,
                           log=lambda text: tqdm.write(text))
    except DATASET_ERRORS as exc:
        bar.close()
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        bar.close()
        click.echo("interrupted: completed batches are saved; run the same command to resume", err=True)
        sys.exit(130)
    bar.close()
    click.echo(f"protocol: {report.protocol_json}")
    click.echo(str(report))


@main.command("noise")
@click.argument("original", type=click.Path(exists=True, file_okay=False))
@click.argument("remeasured", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the figures here.")
@click.option("--into", "into_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Store the joined re-measurements as ORIGINAL's `noise` table (INTO/noise/noise.parquet), "
                   "which `cwm-bench release` then ships and the data card summarizes. Usually INTO = ORIGINAL.")
def noise_cmd(original: str, remeasured: str, json_out: str | None, into_dir: str | None) -> None:
    """Two-run agreement and estimated oracle accuracy of two measurements of the same programs.

    Per task and overall: programs; pairs; the two-run agreement (share of pairs ORIGINAL and
    REMEASURED order alike; not an upper bound on a model's accuracy); the estimated OPA against
    ORIGINAL of a model that knew the true latencies (from the agreement, assuming independent,
    equally large, roughly Gaussian errors in both runs: cwm_bench/noise.py); the median coefficient
    of variation of the repeats in each run; the median relative change of the latency between runs.
    """
    import json

    from cwm_bench.noise import run_agreement, write_noise_table
    from cwm_bench.rows.reader import NotADatasetError, read_table

    columns = ["record_id", "workload_id", "hw_id", "status", "latency_s", "latencies_s", "measured_at"]
    try:
        first, second = read_table(original, "records", columns), read_table(remeasured, "records", columns)
        result = run_agreement(first, second)
    except (NotADatasetError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not result["programs"]:
        raise click.ClickException("no record is ok in both datasets: nothing to compare")
    if into_dir:
        click.echo(f"noise table: {write_noise_table(into_dir, first, second)}")
    try:
        names = dict(zip(*(read_table(original, "workloads", ["workload_id", "task_name"]).column(c).to_pylist()
                           for c in ("workload_id", "task_name")), strict=True))
    except NotADatasetError:
        names = {}
    for wid, task in result["per_task"].items():
        task["task_name"] = names.get(wid, wid)

    def fmt(value: float | None, spec: str = ".3f") -> str:
        return "-" if value is None else format(value, spec)

    header = (f"{'task':<36} {'programs':>8} {'pairs':>7} {'2-run agr':>9} {'oracle':>7} {'cv orig':>8} "
              f"{'cv new':>8} {'rel chg':>8}")
    click.echo(header)
    click.echo("-" * len(header))
    overall = {**result, "task_name": "overall (pooled pairs)", "oracle_opa": result["oracle_opa_pooled"]}
    for task in [*result["per_task"].values(), overall]:
        click.echo(f"{task['task_name'][:36]:<36} {task['programs']:>8} {task['pairs']:>7} "
                   f"{fmt(task['agreement']):>9} {fmt(task['oracle_opa']):>7} "
                   f"{fmt(task['median_cv_original'], '.2%'):>8} {fmt(task['median_cv_remeasured'], '.2%'):>8} "
                   f"{fmt(task['median_rel_change'], '.2%'):>8}")
    click.echo(f"two-run agreement: {fmt(result['agreement'])} pooled over {result['pairs']} pairs, "
               f"{fmt(result['agreement_task_mean'])} mean over {result['tasks']} tasks")
    click.echo(f"estimated oracle accuracy (OPA against ORIGINAL of a model that knew the true latencies): "
               f"{fmt(result['oracle_opa_pooled'])} pooled, {fmt(result['oracle_opa_task_mean'])} mean over tasks")
    click.echo(f"median latency ratio remeasured/original {fmt(result['median_ratio'])}")
    cv_a, cv_b = result["median_cv_original"], result["median_cv_remeasured"]
    if cv_a and cv_b and max(cv_a / cv_b, cv_b / cv_a) >= 1.5:
        noisier = "ORIGINAL" if cv_a > cv_b else "REMEASURED"
        click.echo(f"note: {noisier}'s timings spread {max(cv_a / cv_b, cv_b / cv_a):.1f}x more; if its errors are "
                   f"larger too, the oracle estimate (which assumes equal noise) is too "
                   f"{'high' if noisier == 'ORIGINAL' else 'low'}")
    if json_out:
        with open(json_out, "w") as handle:
            json.dump(result, handle, indent=1, sort_keys=True)
        click.echo(f"wrote {json_out}")


@main.command()
@click.argument("source_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Release folder (Hugging Face Hub layout). An existing release there is replaced atomically.")
@click.option("--name", required=True, help="Hub repo id the card refers to, e.g. ORG/cwm-bench-cpu-v0.")
@click.option("--hw-id", default=None,
              help="The hardware to release, when the source holds several (a release never mixes CPU models).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the within_task split.")
@click.option("--min-ok-per-task", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leave out tasks with fewer ok records (small design spaces); the card lists them.")
def release(source_dir: str, out_dir: str, name: str, hw_id: str | None, seed: int, min_ok_per_task: int) -> None:
    """Build a release folder from a collection: Hub-layout Parquet shards, split columns, checksums, card.

    \b
    OUT/README.md                      data card generated from the data
    OUT/checksums.sha256               sha256sum -c format
    OUT/data/workloads/train-*.parquet tasks that have records
    OUT/data/records/train-*.parquet   records + split_within_task, split_by_network, split_by_operator
    OUT/data/noise/train-*.parquet     re-measurements, if the source has a noise table
    """
    from cwm_bench.data_cards.card import human_bytes as size
    from cwm_bench.release import ReleaseError, build_release

    try:
        stats = build_release(source_dir, out_dir, name, hw_id=hw_id, seed=seed, min_ok_per_task=min_ok_per_task)
    except ReleaseError as exc:
        raise click.ClickException(str(exc)) from exc
    hardware = ", ".join(f"{h['name']} ({h['hw_id']})" for h in stats["hardware"])
    click.echo(f"{out_dir}: {stats['records']:,} records ({stats['ok_records']:,} ok) of {stats['tasks']} tasks "
               f"on {hardware}")
    per_task, sources = stats["ok_per_task"], ", ".join(f"{n} {k}" for k, n in stats["tasks_by_source"].items())
    if per_task:
        click.echo(f"  ok records per task: min {per_task['min']}, median {per_task['median']:g}, max "
                   f"{per_task['max']}; {per_task['tasks_with_200_ok']} tasks with >= 200; tasks by source: {sources}")
    click.echo("  by origin: " + ", ".join(f"{k} {n:,}" for k, n in stats["by_origin"].items()))
    excluded = stats["release"].get("excluded_tasks") or []
    if excluded:
        click.echo(f"  left out: {len(excluded)} task(s) with < {min_ok_per_task} ok records: "
                   + ", ".join(f"{t['task_name']} ({t['ok']})" for t in excluded))
    for scheme, sides in stats["splits"].items():
        click.echo(f"  split {scheme:<12} train {sides['train']['records']:>8,}  test {sides['test']['records']:>8,}")
    click.echo(f"total size {size(stats['folder_bytes'])} (data files {size(stats['total_data_bytes'])})")


@main.command()
@click.argument("release_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--name", default=None, help="Hub repo id for the card (default: the one the release was built with).")
def card(release_dir: str, name: str | None) -> None:
    """(Re)write RELEASE_DIR/README.md, the data card, from the data in the folder."""
    from cwm_bench.data_cards.card import write_card
    from cwm_bench.rows.reader import DatasetIntegrityError, NotADatasetError, layout_of

    try:
        if layout_of(release_dir) != "release":
            raise click.ClickException(f"{release_dir} is a collection folder; build a release with "
                                       "`cwm-bench release` first")
        write_card(release_dir, name)
    except DatasetIntegrityError as exc:
        raise click.ClickException(str(exc)) from exc
    except (NotADatasetError, KeyError) as exc:
        raise click.ClickException(f"{release_dir}: not a release folder ({exc})") from exc
    click.echo(f"wrote {release_dir}/README.md")


@main.command()
@click.argument("release_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--repo-id", required=True, help="Hub dataset repo, ORG/NAME (created if missing).")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--dry-run", is_flag=True, help="Check the folder and list what would be uploaded; no network.")
def publish(release_dir: str, repo_id: str, private: bool, dry_run: bool) -> None:
    """Upload a release folder to the Hugging Face Hub as a dataset.

    The folder is checked first (README.md with `configs`, checksums match). The token comes from
    HF_TOKEN or `hf auth login` and is never printed.
    """
    import os

    from cwm_bench.data_cards.card import human_bytes as size
    from cwm_bench.publish import PublishError
    from cwm_bench.publish import publish as publish_release

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise click.BadParameter("expected ORG/NAME", param_hint="--repo-id")
    try:
        files = publish_release(release_dir, repo_id, private=private, dry_run=dry_run)
    except PublishError as exc:
        raise click.ClickException(str(exc)) from exc
    sizes = [os.path.getsize(os.path.join(release_dir, f)) for f in files]
    for f, n in zip(files, sizes, strict=True):
        click.echo(f"{size(n):>10}  {f}")
    verb = "would upload" if dry_run else "uploaded"
    click.echo(f"{verb} {len(files)} files, {size(sum(sizes))} to https://huggingface.co/datasets/{repo_id}")
