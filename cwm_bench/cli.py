"""`cwm-bench`: collect schedule traces with measured latencies into Parquet, and check them."""

from __future__ import annotations

import sys

import click

from cwm_bench import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cwm-bench")
def main() -> None:
    """CWM-Bench: a dataset and benchmark for learned tensor-program cost models.

    \b
    Typical flow:
      cwm-bench workloads list --suite mini
      cwm-bench collect --target llvm --workloads mini --per-task 32 --out data/mini
      cwm-bench validate data/mini
    """


@main.group()
def workloads() -> None:
    """The tunable tasks (operators and fused network tasks) and the suites that group them."""


@workloads.command("list")
@click.option("--suite", default=None, help="Show one suite's workloads (default: list the suites).")
@click.option("--target", "target_kind", type=click.Choice(["llvm", "cuda"]), default="llvm", show_default=True)
def workloads_list(suite: str | None, target_kind: str) -> None:
    """List the suites, or the workloads of one suite with ids, families, FLOPs and networks."""
    from cwm_bench.workload.suites import SUITES, UnknownSuiteError, load_suite

    if suite is None:
        for name, text in SUITES.items():
            click.echo(f"{name:<10} {text}")
        return
    try:
        items = load_suite(suite, target_kind)
    except UnknownSuiteError as exc:
        raise click.BadParameter(str(exc), param_hint="--suite") from exc
    click.echo(f"{'workload_id':<17} {'family':<17} {'MFLOP':>9}  {'task':<40} networks")
    for w in items:
        nets = ", ".join(f"{u.network}x{u.weight}" for u in w.networks) or "-"
        click.echo(f"{w.workload_id:<17} {w.family:<17} {w.flops / 1e6:>9.1f}  {w.task_name[:40]:<40} {nets}")
    click.echo(f"{len(items)} workloads")


@main.command()
@click.option("--target", "target_kind", type=click.Choice(["llvm", "cuda"]), default="llvm", show_default=True,
              help="llvm: this machine's CPU (mcpu detected). cuda: see the README's GPU section.")
@click.option("--workloads", "suite", default="mini", show_default=True,
              help="A suite (`cwm-bench workloads list`), optionally filtered: `cpu-v0:conv2d`, "
                   "`mini:matmul_64x64x64,softmax_64x128`.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Dataset folder. An existing folder is resumed, never overwritten.")
@click.option("--per-task", default=64, show_default=True, help="Records per task (errors count too).")
@click.option("--batch-size", default=16, show_default=True, help="Candidates built and measured together.")
@click.option("--evolutionary-fraction", default=0.5, show_default=True,
              help="Share of each task's records drawn by evolutionary search; the rest are random.")
@click.option("--seed", default=0, show_default=True)
@click.option("--rounds", default=5, show_default=True, help="Interleaved measurement rounds over a batch.")
@click.option("--repeats", default=3, show_default=True, help="Timings per candidate per round.")
@click.option("--min-repeat-ms", default=10, show_default=True, help="Each timing loops the kernel this long.")
@click.option("--cache-flush/--no-cache-flush", default=False, show_default=True,
              help="Flush CPU caches before every timing (cold-cache latencies).")
@click.option("--check-fraction", default=0.1, show_default=True,
              help="Share of candidates whose outputs are compared with the unscheduled program.")
@click.option("--timeout", "timeout_s", default=30.0, show_default=True,
              help="Seconds a kernel may take per load or per round before it is recorded as `timeout`.")
@click.option("--build-workers", default=None, type=int, help="Parallel compiles (default: one per core).")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs only).")
def collect(target_kind: str, suite: str, out_dir: str, per_task: int, batch_size: int,
            evolutionary_fraction: float, seed: int, rounds: int, repeats: int, min_repeat_ms: int,
            cache_flush: bool, check_fraction: float, timeout_s: float, build_workers: int | None,
            no_progress: bool) -> None:
    """Generate schedules, build and measure them, and append the records to a Parquet dataset.

    Resumable: run the same command again (after a crash, kill -9 or Ctrl-C) and it continues
    where it stopped; at most the batch in flight is lost. Kernels that crash or hang become
    error rows (`run_error`, `timeout`), never a dead collector.
    """
    from tqdm import tqdm

    from cwm_bench.collect import CollectConfig, Collector
    from cwm_bench.hardware import detect_cpu
    from cwm_bench.measure.protocol import MeasureProtocol
    from cwm_bench.report import summary_table
    from cwm_bench.workload.suites import UnknownSuiteError, select_workloads

    if target_kind == "cuda":
        raise click.UsageError(CUDA_FLOW)
    try:
        chosen = select_workloads(suite, target_kind)
    except UnknownSuiteError as exc:
        raise click.BadParameter(str(exc), param_hint="--workloads") from exc
    protocol = MeasureProtocol(rounds=rounds, repeats_per_round=repeats, min_repeat_ms=min_repeat_ms,
                               cache_flush=cache_flush, check_fraction=check_fraction, timeout_s=timeout_s)
    config = CollectConfig(per_task=per_task, batch_size=batch_size, seed=seed,
                           evolutionary_fraction=evolutionary_fraction, build_workers=build_workers,
                           protocol=protocol)
    hardware = detect_cpu()
    click.echo(f"hardware: {hardware.name} ({hardware.arch}, {hardware.num_cores} cores), hw_id {hardware.hw_id}")
    bar = tqdm(total=0, unit="rec", disable=no_progress, dynamic_ncols=True)
    collector = Collector(hardware, out_dir, config,
                          on_records=lambda n, task: (bar.set_postfix_str(task[:30]), bar.update(n)),
                          log=lambda text: tqdm.write(text))
    bar.total = collector.remaining(chosen)
    bar.refresh()
    click.echo(f"{len(chosen)} tasks, {bar.total} records to collect into {out_dir}", err=True)
    try:
        summaries = collector.run(chosen)
    except KeyboardInterrupt:
        bar.close()
        click.echo("interrupted: completed batches are saved; run the same command to resume", err=True)
        sys.exit(130)
    bar.close()
    click.echo(summary_table(summaries))


@main.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--replay", "replay_count", default=20, show_default=True,
              help="Random traces replayed to confirm they rebuild the recorded program (0: skip).")
@click.option("--rebuild-manifest", is_flag=True,
              help="First rewrite manifest.json from the shards on disk (after a killed write).")
def validate(data_dir: str, replay_count: int, rebuild_manifest: bool) -> None:
    """Check a dataset folder: schema, ids, duplicates, checksums, and that stored traces replay.

    Exit code 0 when valid, 1 with one line per problem (file and row) otherwise.
    """
    from cwm_bench.validate import validate_dataset

    if rebuild_manifest:
        from cwm_bench.rows.store import DatasetStore

        DatasetStore(data_dir).write_manifest()

    problems, stats = validate_dataset(data_dir, replay_count=replay_count)
    for p in problems:
        click.echo(f"error: {p}", err=True)
    if problems:
        click.echo(f"{data_dir}: {len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(f"{data_dir}: ok ({stats})")


@main.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
def compact(data_dir: str) -> None:
    """Merge a collection folder's many small shards into one per table (duplicates dropped).

    Collections write one shard per batch; compact before committing or sharing a folder.
    Refused while a collector is writing to the folder.
    """
    from cwm_bench.rows.store import DatasetBusyError, DatasetStore

    try:
        store = DatasetStore(data_dir)
    except DatasetBusyError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        for table in ("workloads", "records"):
            before, rows = store.compact(table)
            click.echo(f"{table}: {before} shard(s) -> 1, {rows} rows")
    finally:
        store.close()


@main.command("import-metaschedule")
@click.argument("db_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
def import_metaschedule(db_dirs: tuple[str, ...], out_dir: str) -> None:
    """Read MetaSchedule JSON databases (database_workload.json + database_tuning_record.json, as
    `ms.tune_tir` writes them) into a CWM-Bench dataset (origin `imported`, features recomputed)."""
    from cwm_bench.import_ms import ImportError_, import_databases

    try:
        report = import_databases(list(db_dirs), out_dir)
    except ImportError_ as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(report)


@main.command("remeasure")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="New dataset folder (same record ids, this machine's hardware). An existing one is resumed.")
@click.option("--target", "target_kind", type=click.Choice(["llvm", "cuda"]), default="llvm", show_default=True,
              help="llvm: this machine's CPU (mcpu detected). cuda: see the README's GPU section.")
@click.option("--sample-fraction", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Below 1: a seeded random sample of each task's ok records (every task keeps at least one).")
@click.option("--seed", default=0, show_default=True, help="Seeds the sample and the measurement order.")
@click.option("--rounds", type=int, default=None, help="Interleaved measurement rounds [default: the source's].")
@click.option("--repeats", type=int, default=None, help="Timings per candidate per round [default: the source's].")
@click.option("--min-repeat-ms", type=int, default=None,
              help="Each timing loops the kernel this long [default: the source's].")
@click.option("--check-fraction", type=float, default=None,
              help="Share of candidates whose outputs are checked [default: the source's].")
@click.option("--timeout", "timeout_s", type=float, default=None,
              help="Seconds per load or round before a kernel is a `timeout` [default: the source's].")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs only).")
def remeasure_cmd(source: str, out_dir: str, target_kind: str, sample_fraction: float, seed: int,
                  rounds: int | None, repeats: int | None, min_repeat_ms: int | None, check_fraction: float | None,
                  timeout_s: float | None, no_progress: bool) -> None:
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
    from cwm_bench.rows.reader import NotADatasetError
    from cwm_bench.rows.store import DatasetBusyError

    overrides = {k: v for k, v in {"rounds": rounds, "repeats_per_round": repeats, "min_repeat_ms": min_repeat_ms,
                                   "check_fraction": check_fraction, "timeout_s": timeout_s}.items() if v is not None}
    config = RemeasureConfig(sample_fraction=sample_fraction, seed=seed, protocol_overrides=overrides)
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
    except (NotADatasetError, DatasetBusyError) as exc:
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
    """The noise ceiling: how two measurements of the same programs agree (ORIGINAL vs REMEASURED).

    Per task and overall: programs, pairwise ordering agreement (the best pairwise accuracy any cost
    model can reach on this data), median coefficient of variation of the repeats in each run, and
    the median relative change of the latency between runs.
    """
    import json

    from cwm_bench.noise import noise_ceiling, write_noise_table
    from cwm_bench.rows.reader import NotADatasetError, read_table

    columns = ["record_id", "workload_id", "hw_id", "status", "latency_s", "latencies_s", "measured_at"]
    try:
        first, second = read_table(original, "records", columns), read_table(remeasured, "records", columns)
        result = noise_ceiling(first, second)
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

    header = f"{'task':<36} {'programs':>8} {'pairs':>7} {'agreement':>9} {'cv orig':>8} {'cv new':>8} {'rel chg':>8}"
    click.echo(header)
    click.echo("-" * len(header))
    for task in [*result["per_task"].values(), {**result, "task_name": "overall (pooled pairs)"}]:
        click.echo(f"{task['task_name'][:36]:<36} {task['programs']:>8} {task['pairs']:>7} "
                   f"{fmt(task['agreement']):>9} {fmt(task['median_cv_original'], '.2%'):>8} "
                   f"{fmt(task['median_cv_remeasured'], '.2%'):>8} {fmt(task['median_rel_change'], '.2%'):>8}")
    click.echo(f"agreement: {fmt(result['agreement'])} pooled over {result['pairs']} pairs, "
               f"{fmt(result['agreement_task_mean'])} mean over {result['tasks']} tasks; "
               f"median latency ratio remeasured/original {fmt(result['median_ratio'])}")
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
@click.option("--seed", default=0, show_default=True, help="Seed of the within_task split.")
def release(source_dir: str, out_dir: str, name: str, hw_id: str | None, seed: int) -> None:
    """Build a release folder from a collection: Hub-layout Parquet shards, split columns, checksums, card.

    \b
    OUT/README.md                      data card generated from the data
    OUT/checksums.sha256               sha256sum -c format
    OUT/data/workloads/train-*.parquet tasks that have records
    OUT/data/records/train-*.parquet   records + split_within_task, split_by_network, split_by_operator
    OUT/data/noise/train-*.parquet     re-measurements, if the source has a noise table
    """
    from cwm_bench.release import ReleaseError, build_release
    from data_cards.card import human_bytes as size

    try:
        stats = build_release(source_dir, out_dir, name, hw_id=hw_id, seed=seed)
    except ReleaseError as exc:
        raise click.ClickException(str(exc)) from exc
    hardware = ", ".join(f"{h['name']} ({h['hw_id']})" for h in stats["hardware"])
    click.echo(f"{out_dir}: {stats['records']:,} records ({stats['ok_records']:,} ok) of {stats['tasks']} tasks "
               f"on {hardware}")
    for scheme, sides in stats["splits"].items():
        click.echo(f"  split {scheme:<12} train {sides['train']['records']:>8,}  test {sides['test']['records']:>8,}")
    click.echo(f"total size {size(stats['folder_bytes'])} (data files {size(stats['total_data_bytes'])})")


@main.command()
@click.argument("release_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--name", default=None, help="Hub repo id for the card (default: the one the release was built with).")
def card(release_dir: str, name: str | None) -> None:
    """(Re)write RELEASE_DIR/README.md, the data card, from the data in the folder."""
    from cwm_bench.rows.reader import NotADatasetError, layout_of
    from data_cards.card import write_card

    try:
        if layout_of(release_dir) != "release":
            raise click.ClickException(f"{release_dir} is a collection folder; build a release with "
                                       "`cwm-bench release` first")
        write_card(release_dir, name)
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

    from cwm_bench.publish import PublishError
    from cwm_bench.publish import publish as publish_release
    from data_cards.card import human_bytes as size

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


@main.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--png", default=None, type=click.Path(dir_okay=False), help="Also draw a bar chart of --metric here.")
@click.option("--metric", default="opa", show_default=True, help="The metric the chart shows (with its 95% CI).")
def report_cmd(results: tuple[str, ...], png: str | None, metric: str) -> None:
    """Markdown table of evaluation results (rows: model x split; mean ± half the 95% CI over tasks).

    RESULTS are JSON files written by the evaluation (model, split, metrics).
    """
    from cwm_bench.results_report import ResultsReportError, report

    try:
        click.echo(report(list(results), png, metric))
    except ResultsReportError as exc:
        raise click.ClickException(str(exc)) from exc
    if png:
        click.echo(f"wrote {png}", err=True)


SPLIT_SCHEMES = ("all", "within_task", "by_network", "by_operator")


def _records_of(data_dir: str, split: str, side: str):
    """The records a command works on: everything for `all` (collection folders have no split
    columns), else one side ("train"/"test") of the release's `split_<scheme>` column."""
    from cwm_bench.model import load_records
    from cwm_bench.rows.reader import NotADatasetError

    try:
        records = load_records(data_dir) if split == "all" else load_records(data_dir, f"split_{split}", side)
    except (NotADatasetError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not len(records):
        raise click.ClickException(f"{data_dir}: no ok records on the {side} side of split {split!r}")
    return records


def _model_config(config_json: str | None) -> dict:
    import json
    import os

    if config_json is None:
        return {}
    try:
        if os.path.isfile(config_json):
            with open(config_json) as handle:
                config = json.load(handle)
        else:
            config = json.loads(config_json)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON (a string or a file): {exc}", param_hint="--config") from exc
    if not isinstance(config, dict):
        raise click.BadParameter("must be a JSON object of model options", param_hint="--config")
    return config


def _create_model(name: str, config: dict):
    from cwm_bench.model import create_model
    from cwm_bench.model.registry import UnknownModelError

    try:
        return create_model(name, **config)
    except UnknownModelError as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from exc
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(f"{name}: {exc}", param_hint="--config") from exc


@main.command()
@click.option("--model", "model_name", required=True, help="A registered model (e.g. ansor-xgb, tenset-mlp).")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Dataset folder (collection or release).")
@click.option("--split", type=click.Choice(SPLIT_SCHEMES), required=True,
              help="all: every ok record (collection folders). A scheme: that scheme's train side (release folders).")
@click.option("--config", "config_json", default=None, help="Model options as a JSON object, or a JSON file.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Checkpoint folder to write.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def train(model_name: str, data_dir: str, split: str, config_json: str | None, out_dir: str,
          no_progress: bool) -> None:
    """Fit a cost model on a dataset's training records and save a checkpoint (no pickles).

    \b
    cwm-bench train --model ansor-xgb --data release/cpu-v0 --split by_network --out ckpt/xgb
    cwm-bench evaluate --model ckpt/xgb --data release/cpu-v0 --split by_network --json xgb.json
    """
    import time

    model = _create_model(model_name, _model_config(config_json))
    records = _records_of(data_dir, split, "train")
    tasks = len(set(records.task_ids()))
    click.echo(f"training {model_name} on {len(records):,} records of {tasks} tasks ({split})", err=True)
    started = time.perf_counter()
    model.fit(records, progress=not no_progress)
    model.save(out_dir)
    click.echo(f"wrote {out_dir} ({time.perf_counter() - started:.1f} s)")


@main.command()
@click.option("--model", "model_ref", required=True,
              help="A checkpoint folder from `cwm-bench train`, or the name of a model that needs no training "
                   "(random, flops).")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Dataset folder (collection or release).")
@click.option("--split", type=click.Choice(SPLIT_SCHEMES), required=True,
              help="all: every ok record. A scheme: that scheme's test side.")
@click.option("--json", "json_out", required=True, type=click.Path(dir_okay=False), help="Result file to write.")
@click.option("--config", "config_json", default=None, help="Options of a model given by name (JSON).")
def evaluate(model_ref: str, data_dir: str, split: str, json_out: str, config_json: str | None) -> None:
    """Score the test records with a model and write every ranking metric, with provenance, as JSON.

    Metrics are computed per task, then averaged over tasks (plain and weighted by how often the
    task occurs in its networks, 1 for operator tasks) with bootstrap 95% intervals. The file also
    records the model and its config, the dataset's checksum, the split and the software versions
    (schema: `cwm_bench/results.py`).
    """
    import os
    import time

    import numpy as np

    from cwm_bench.metrics import TASK_METRICS, Evaluator
    from cwm_bench.model import load_checkpoint
    from cwm_bench.results import EvaluationResult, dataset_digest, git_commit, package_versions, utc_now

    checkpoint = None
    if os.path.isdir(model_ref):
        if config_json is not None:
            raise click.BadParameter("a checkpoint carries its own config", param_hint="--config")
        try:
            model = load_checkpoint(model_ref)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise click.BadParameter(str(exc), param_hint="--model") from exc
        checkpoint = os.path.abspath(model_ref)
    else:
        model = _create_model(model_ref, _model_config(config_json))
        if getattr(model, "trainable", True) and not getattr(model, "is_fitted", False):
            raise click.BadParameter(f"{model_ref!r} must be trained first: `cwm-bench train --model {model_ref} "
                                     f"... --out CKPT`, then `--model CKPT`", param_hint="--model")
    side = "all" if split == "all" else "test"
    records = _records_of(data_dir, split, side)
    started = time.perf_counter()
    scores = np.asarray(model.score(records.without_labels()), dtype=np.float64)
    score_s = time.perf_counter() - started
    task_weight = {w: float(sum(u["weight"] for u in nets)) if nets else 1.0 for w, nets in
                   zip(*(records.workloads.column(c).to_pylist() for c in ("workload_id", "networks")), strict=True)}
    weights = [task_weight[w] for w in records.task_ids()]
    metrics = Evaluator().eval({"task_id": records.task_ids(), "y_true_latency": records.latency(),
                                "y_score": scores, "task_weight": weights})
    digest, files = dataset_digest(data_dir)
    result = EvaluationResult(
        model=model.name, model_config=model.config, checkpoint=checkpoint,
        dataset_id=os.path.basename(os.path.normpath(os.path.abspath(data_dir))), dataset_sha256=digest,
        dataset_files=files, split=split, split_side=side, num_tasks=metrics["num_tasks"],
        num_programs=metrics["num_programs"], metrics={m: metrics[m] for m in TASK_METRICS},
        per_task=metrics["per_task"], versions=package_versions(), git_commit=git_commit(), created_at=utc_now(),
        notes={"score_seconds": round(score_s, 3)})
    result.write(json_out)
    click.echo(f"{model.name} on {result.dataset_id} ({split}, {side}): {result.num_programs:,} programs, "
               f"{result.num_tasks} tasks")
    for m in TASK_METRICS:
        e = metrics[m]
        click.echo(f"  {m:<13} {e['mean']:.4f}  [{e['ci_low']:.4f}, {e['ci_high']:.4f}]  "
                   f"weighted {e['weighted_mean']:.4f}")
    click.echo(f"wrote {json_out}")


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


if __name__ == "__main__":
    main()
