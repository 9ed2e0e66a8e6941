"""Commands of the collection stage: workloads, collect, validate, compact, import-metaschedule."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cwm_bench.cli import main
from cwm_bench.cli.cuda import CUDA_FLOW
from cwm_bench.hardware import GPU_PRESETS

GPU_PRESET_NAMES = list(GPU_PRESETS)

# Ranges of the counts and fractions (bad values are usage errors, exit 2, before anything runs).
COUNT = click.IntRange(min=1)
SEED = click.IntRange(min=0)
FRACTION = click.FloatRange(0.0, 1.0)
SECONDS = click.FloatRange(min=0.0, min_open=True)


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
              help="llvm: this machine's CPU (mcpu detected). cuda: this machine's GPU (tvm.cuda(0)), or with "
                   "--rpc-tracker the GPU servers' (kernels compiled to cubins here); without either, the bundle "
                   "flow in docs/cuda.md.")
@click.option("--workloads", "suite", default="mini", show_default=True,
              help="A suite (`cwm-bench workloads list`), optionally filtered: `cpu-v0:conv2d`, "
                   "`mini:matmul_64x64x64,softmax_64x128`.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Dataset folder. An existing folder is resumed, never overwritten.")
@click.option("--per-task", type=COUNT, default=64, show_default=True, help="Records per task (errors count too).")
@click.option("--batch-size", type=COUNT, default=16, show_default=True,
              help="Candidates built and measured together.")
@click.option("--evolutionary-fraction", type=FRACTION, default=0.5, show_default=True,
              help="Share of each task's records drawn by evolutionary search; the rest are random.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--rounds", type=COUNT, default=5, show_default=True, help="Interleaved measurement rounds over a batch.")
@click.option("--repeats", type=COUNT, default=3, show_default=True, help="Timings per candidate per round.")
@click.option("--min-repeat-ms", type=click.IntRange(min=0), default=10, show_default=True,
              help="Each timing loops the kernel this long.")
@click.option("--cache-flush/--no-cache-flush", default=None,
              help="Flush caches before every timing (cold-cache latencies). Default: off on CPU; on with "
                   "--target cuda (a device copy of 2x the L2 size, as the bundle flow times GPUs).")
@click.option("--check-fraction", type=FRACTION, default=0.1, show_default=True,
              help="Share of candidates whose outputs are compared with the unscheduled program.")
@click.option("--timeout", "timeout_s", type=SECONDS, default=30.0, show_default=True,
              help="Seconds a kernel may take per load or per round before it is recorded as `timeout`.")
@click.option("--build-workers", default=None, type=COUNT, help="Parallel compiles (default: one per core).")
@click.option("--rpc-tracker", default=None, metavar="HOST:PORT",
              help="Measure on the servers of this TVM RPC tracker instead of this machine (builds stay here).")
@click.option("--device-key", default=None, help="With --rpc-tracker: the key the device servers registered under.")
@click.option("--parallel", default=None, type=COUNT,
              help="With --rpc-tracker: sessions measuring at once (default: the servers registered at start).")
@click.option("--device-hardware", default=None, type=click.Path(exists=True, dir_okay=False),
              help="With --rpc-tracker: the devices' descriptor, from `cwm-bench hardware [--gpu] --json` run on "
                   "one of them (default: this machine's CPU, or with --target cuda the GPU as a server describes "
                   "it; a server reporting another LLVM CPU or GPU stops the run).")
@click.option("--max-attempts", type=COUNT, default=2, show_default=True,
              help="With --rpc-tracker: servers a candidate may lose (death, hang) before it is an error row.")
@click.option("--overlap", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Search and build the next batch while this one is measured, on other cores. auto: on where "
                   "`cwm-bench check-overlap` found it keeps timings stable on this machine (and always with "
                   "--rpc-tracker), else off with a note why.")
@click.option("--measure-cores", default=None, metavar="N|CORES",
              help="With overlap: the cores that measure, as a count (the last N usable cores) or a list "
                   "(`1,3`, `2-3`); the others search and build. Default: half the cores. Rows record the "
                   "measuring cores as the hardware's core count.")
@click.option("--gpu", "gpu_choice", type=click.Choice(["auto", *GPU_PRESET_NAMES]), default="auto",
              show_default=True,
              help="With --target cuda: auto describes the GPU from the device (or an RPC server); a preset "
                   "also checks that the GPU is that one, and describes servers that cannot tell.")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs only).")
def collect(target_kind: str, suite: str, out_dir: str, per_task: int, batch_size: int,
            evolutionary_fraction: float, seed: int, rounds: int, repeats: int, min_repeat_ms: int,
            cache_flush: bool | None, check_fraction: float, timeout_s: float, build_workers: int | None,
            rpc_tracker: str | None, device_key: str | None, parallel: int | None, device_hardware: str | None,
            max_attempts: int, overlap: str, measure_cores: str | None, gpu_choice: str, no_progress: bool) -> None:
    """Generate schedules, build and measure them, and append the records to a Parquet dataset.

    Resumable: run the same command again (after a crash, kill -9 or Ctrl-C) and it continues
    where it stopped; at most the batch in flight is lost. Kernels that crash or hang become
    error rows (`run_error`, `timeout`), never a dead collector.

    \b
    Many measuring machines (TVM's RPC tracker; see the README):
      python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190          # one host
      python -m tvm.exec.rpc_server --tracker HOST:9190 --key xeon-8480   # each device
      cwm-bench collect --workloads cpu-v0 --out DIR --rpc-tracker HOST:9190 --device-key xeon-8480
    GPU servers the same way (kernels arrive compiled: cubins built here with nvcc, no GPU needed;
    a server needs TVM's runtime with CUDA, no compiler):
      cwm-bench collect --target cuda --workloads gpu-v0 --out DIR --rpc-tracker HOST:9190 --device-key h100
    Rows name the server that timed them (`measured_by`); several collectors' folders
    become one with `cwm-bench merge`.
    """
    from tqdm import tqdm

    from cwm_bench.collect import CollectConfig, Collector
    from cwm_bench.hardware import detect_cpu
    from cwm_bench.measure.protocol import MeasureProtocol
    from cwm_bench.measure.rpc import TrackerError
    from cwm_bench.report import summary_table
    from cwm_bench.rows.store import DATASET_ERRORS
    from cwm_bench.workload.suites import UnknownSuiteError, select_workloads

    if gpu_choice != "auto" and (target_kind != "cuda" or device_hardware):
        raise click.UsageError("--gpu PRESET is for --target cuda, without --device-hardware (both would describe "
                               "the GPU)")
    rpc = _rpc_config(rpc_tracker, device_key, parallel, max_attempts, device_hardware)
    given = _descriptor(device_hardware) if device_hardware else None
    if given is not None and given.kind != ("gpu" if target_kind == "cuda" else "cpu"):
        raise click.BadParameter(f"{device_hardware} describes a {given.kind.upper()} ({given.name}), but "
                                 f"--target {target_kind} measures on a {'GPU' if target_kind == 'cuda' else 'CPU'}",
                                 param_hint="--device-hardware")
    gpu = None
    if target_kind == "cuda":
        gpu = given or _gpu_for(rpc, gpu_choice)
        cache_flush = True if cache_flush is None else cache_flush
    try:
        chosen = select_workloads(suite, target_kind)
    except UnknownSuiteError as exc:
        raise click.BadParameter(str(exc), param_hint="--workloads") from exc
    protocol = MeasureProtocol(rounds=rounds, repeats_per_round=repeats, min_repeat_ms=min_repeat_ms,
                               cache_flush=bool(cache_flush), check_fraction=check_fraction, timeout_s=timeout_s)
    if gpu is not None:
        if measure_cores:
            raise click.UsageError("--measure-cores is for CPU measurement; a GPU measures with --target cuda")
        # kernels are timed on the GPU with CUDA events: builds on the CPU beside them do not enter the timings
        cores, overlapped, hardware = None, overlap != "off", gpu
    elif rpc:
        if measure_cores:
            raise click.UsageError("--measure-cores is for measuring on this machine, not with --rpc-tracker")
        cores, overlapped = None, overlap != "off"
        hardware = given or detect_cpu()
    else:
        cores, overlapped, note = _overlap_plan(overlap, measure_cores, out_dir)
        click.echo(note, err=True)
        hardware = detect_cpu(len(cores) if cores else None)
    config = CollectConfig(per_task=per_task, batch_size=batch_size, seed=seed,
                           evolutionary_fraction=evolutionary_fraction, build_workers=build_workers,
                           protocol=protocol, rpc=rpc, measure_cores=cores, overlap=overlapped)
    where = f"RPC {'GPU ' if gpu is not None else ''}servers under key {rpc.key!r} at {rpc.tracker}" if rpc else \
        ("this machine's GPU" if gpu is not None else "this machine")
    units = "SMs" if hardware.kind == "gpu" else "cores"
    click.echo(f"hardware: {hardware.name} ({hardware.arch}, {hardware.num_cores} {units}), hw_id {hardware.hw_id}; "
               f"measuring on {where}")
    bar = tqdm(total=0, unit="rec", disable=no_progress, dynamic_ncols=True)
    try:
        collector = Collector(hardware, out_dir, config,
                              on_records=lambda n, task: (bar.set_postfix_str(task[:30]), bar.update(n)),
                              log=lambda text: tqdm.write(text))
    except (ValueError, *DATASET_ERRORS) as exc:  # a busy folder, settings this hardware cannot honour
        bar.close()
        raise click.ClickException(str(exc)) from exc
    try:
        with collector:
            bar.total = collector.remaining(chosen)
            bar.refresh()
            click.echo(f"{len(chosen)} tasks, {bar.total} records to collect into {out_dir}", err=True)
            summaries = collector.run(chosen)
    except KeyboardInterrupt:
        bar.close()
        click.echo("interrupted: completed batches are saved; run the same command to resume", err=True)
        sys.exit(130)
    except (TrackerError, *DATASET_ERRORS) as exc:
        bar.close()
        raise click.ClickException(str(exc)) from exc
    bar.close()
    click.echo(summary_table(summaries))


def _descriptor(path: str):
    from cwm_bench.hardware import HardwareDescriptor

    try:
        return HardwareDescriptor.from_json(Path(path).read_text())
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(f"{path} is not a hardware descriptor (`cwm-bench hardware [--gpu] --json` "
                                 f"writes one): {exc}", param_hint="--device-hardware") from exc


def _gpu_for(rpc, choice: str):
    """The GPU rows will record: read from this machine's GPU or an RPC server; with a preset, checked
    against it (and the preset itself where a server cannot tell)."""
    from cwm_bench.cuda.remote import rpc_gpu

    preset = GPU_PRESETS.get(choice)
    if rpc is None:
        found = _gpu_hardware()
    else:
        found, why = rpc_gpu(rpc)
        if found is None and preset is None:
            raise click.ClickException(f"{why}; name the GPU with --gpu {'|'.join(GPU_PRESET_NAMES)} or describe it "
                                       f"with --device-hardware FILE (`cwm-bench hardware --gpu --json > FILE` on a "
                                       f"machine with that GPU)")
        if found is None:
            click.echo(f"{why}: rows record the --gpu {choice} preset ({preset.name})", err=True)
            return preset
    if preset is not None and (found.name, found.arch) != (preset.name, preset.arch):
        raise click.UsageError(f"the GPU is an {found.name} ({found.arch}), not --gpu {choice} ({preset.name}, "
                               f"{preset.arch})")
    return found


def _rpc_gpu_hardware(rpc):
    """The GPU of a server under the key, as its CUDA device API describes it, or one clear error."""
    from cwm_bench.cuda.remote import rpc_gpu

    hardware, why = rpc_gpu(rpc)
    if hardware is None:
        raise click.ClickException(why)
    return hardware


def _gpu_hardware():
    """This machine's GPU, or a usage error naming the bundle flow."""
    from cwm_bench.cuda.local import local_gpu

    hardware, why = local_gpu()
    if hardware is None:
        raise click.UsageError(f"{why}.\n{CUDA_FLOW}")
    return hardware


def _resumed_cores(out_dir: str | None, plan) -> str | None:
    """"pinned" / "all" when `out_dir` already holds this CPU's records measured on `plan.measure` / on
    every core (so that `auto` keeps a resumed collection's hardware); None for a new folder."""
    from cwm_bench.hardware import detect_cpu
    from cwm_bench.rows.store import DatasetStore

    if not out_dir or not os.path.isdir(os.path.join(out_dir, "records")):
        return None
    store = DatasetStore(out_dir, readonly=True)
    pinned = bool(store.progress(detect_cpu(len(plan.measure)).hw_id))
    every = bool(store.progress(detect_cpu().hw_id))
    return "pinned" if pinned and not every else "all" if every and not pinned else None


def _overlap_plan(overlap: str, measure_cores: str | None,
                  out_dir: str | None = None) -> tuple[tuple[int, ...] | None, bool, str]:
    """(measuring cores or None for all, overlap on?, one line saying why) for a local collection."""
    from cwm_bench.hardware import detect_cpu
    from cwm_bench.measure.cores import CorePlanError, default_measure_cores, parse_measure_cores, plan_cores
    from cwm_bench.measure.overlap_check import load_verdict

    try:
        plan = plan_cores(parse_measure_cores(measure_cores) if measure_cores else default_measure_cores())
    except CorePlanError as exc:
        if measure_cores or overlap == "on":
            raise click.BadParameter(str(exc), param_hint="--measure-cores") from exc
        return None, False, f"overlap off: {exc}"
    if overlap == "off":
        return (plan.measure if measure_cores else None), False, \
            "overlap off (--overlap off): builds run between measurements" + \
            (f"; {plan.text}" if measure_cores else ", measurement uses every core")
    verdict = load_verdict(detect_cpu(len(plan.measure)), plan)
    seen = (f"`cwm-bench check-overlap` measured overlapped agreement {verdict.overlapped:.3f} "
            f"[{verdict.overlapped_ci[0]:.3f}, {verdict.overlapped_ci[1]:.3f}] on {verdict.checked_at[:10]}"
            if verdict else "overlap was never checked on this machine")
    if overlap == "on":
        return plan.measure, True, f"overlap on (--overlap on; {seen}): {plan.text}"
    resumed = None if measure_cores else _resumed_cores(out_dir, plan)
    if resumed == "all":
        return None, False, ("overlap off: this folder's records were measured on every core, and a resumed "
                             "collection keeps its hardware (--overlap on to start pinned rows beside them)")
    if verdict and verdict.ok:
        return plan.measure, True, f"overlap on ({seen}): {plan.text}"
    why = f"{seen}, below {verdict.threshold}" if verdict else \
        f"{seen}; `cwm-bench check-overlap` (~4 min) measures whether it keeps timings stable"
    if resumed == "pinned":  # keep measuring the way the folder's records were
        return plan.measure, False, f"overlap off: {why}; measuring on core(s) as this folder's records were: " \
                                    f"{plan.text}"
    return (plan.measure if measure_cores else None), False, f"overlap off: {why}"


def _rpc_config(tracker: str | None, key: str | None, parallel: int | None, max_attempts: int,
                device_hardware: str | None):
    """The RpcConfig of the --rpc-* options (None without a tracker); the tracker is asked right away."""
    from cwm_bench.measure.rpc import RpcConfig, TrackerError, check_tracker, parse_tracker

    if tracker is None:
        if key or parallel or device_hardware:
            raise click.UsageError("--device-key, --parallel and --device-hardware need --rpc-tracker HOST:PORT "
                                   "(without it, this machine measures and its own CPU is recorded)")
        return None
    if not key:
        raise click.UsageError("--rpc-tracker needs --device-key KEY (the key the servers registered under)")
    try:
        parse_tracker(tracker)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--rpc-tracker") from exc
    config = RpcConfig(tracker, key, parallel, max_attempts=max_attempts)
    try:
        servers = check_tracker(config)
    except TrackerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"rpc: {len(servers)} server(s) under key {key!r}: {', '.join(servers)}", err=True)
    return config


@main.command()
@click.option("--json", "as_json", is_flag=True, help="The full descriptor as JSON (for --device-hardware).")
@click.option("--gpu", "gpu", is_flag=True, help="Describe this machine's first CUDA GPU instead.")
@click.option("--rpc-tracker", default=None, metavar="HOST:PORT",
              help="With --gpu: describe the GPU of a server of this tracker instead (as collect will record it).")
@click.option("--device-key", default=None, help="With --rpc-tracker: the key the GPU servers registered under.")
def hardware(as_json: bool, gpu: bool, rpc_tracker: str | None, device_key: str | None) -> None:
    """Describe this machine's CPU (or --gpu: its GPU) as cwm-bench records it (hw_id, arch, cores, ISA)."""
    from cwm_bench.hardware import detect_cpu

    if rpc_tracker and not gpu:
        raise click.UsageError("--rpc-tracker describes a GPU server: add --gpu (a CPU server: run "
                               "`cwm-bench hardware --json` on it)")
    if gpu and rpc_tracker:
        h = _rpc_gpu_hardware(_rpc_config(rpc_tracker, device_key, None, 1, None))
    elif gpu:
        from cwm_bench.cuda.local import local_gpu

        found, why = local_gpu()
        if found is None:
            raise click.ClickException(why)
        h = found
    else:
        h = detect_cpu()
    if as_json:
        click.echo(h.to_json())
        return
    if h.kind == "gpu":
        click.echo(f"{h.name}\n{h.arch}, {h.num_cores} SMs, hw_id {h.hw_id}\n"
                   + " ".join(f"{k}={v}" for k, v in sorted(h.details.items())))
        return
    click.echo(f"{h.name}\nllvm cpu {h.arch}, {h.num_cores} cores, hw_id {h.hw_id}\nisa {' '.join(h.isa)}")


@main.command("check-overlap")
@click.option("--measure-cores", default=None, metavar="N|CORES",
              help="The cores that measure (as for `collect`); default: half the cores.")
@click.option("--workloads", "suite", default="mini:conv2d_14x32x32_k3,depthwise_28x32_k3,softmax_64x128",
              show_default=True, help="Tasks whose programs are timed.")
@click.option("--programs-per-task", type=COUNT, default=80, show_default=True,
              help="Programs timed per task (random schedules, or from --from).")
@click.option("--from", "from_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Take the programs from this collection (its ok records of the chosen tasks) instead.")
def check_overlap_command(measure_cores: str | None, suite: str, programs_per_task: int,
                          from_dir: str | None) -> None:
    """Measure whether building on some cores disturbs timings on the others (~4 min).

    Times the same programs four times in fresh workers pinned to the measuring cores, interleaved:
    quiet, while the other cores compile in a loop, quiet, compiling. Prints the two-run ordering
    agreement each way with a 95% bootstrap interval, and saves the verdict for this machine:
    `collect --overlap auto` overlaps where the overlapped agreement is at least 0.95.
    """
    from cwm_bench.hardware import detect_cpu, target_for
    from cwm_bench.measure.cores import CorePlanError, default_measure_cores, parse_measure_cores, plan_cores
    from cwm_bench.measure.overlap_check import check_overlap, dataset_programs, random_programs, save_verdict
    from cwm_bench.workload.suites import UnknownSuiteError, select_workloads

    try:
        plan = plan_cores(parse_measure_cores(measure_cores) if measure_cores else default_measure_cores())
    except CorePlanError as exc:
        raise click.BadParameter(str(exc), param_hint="--measure-cores") from exc
    try:
        chosen = select_workloads(suite)
    except UnknownSuiteError as exc:
        raise click.BadParameter(str(exc), param_hint="--workloads") from exc
    hardware = detect_cpu(len(plan.measure))
    target = target_for(hardware)
    click.echo(f"hardware: {hardware.name} ({hardware.arch}), hw_id {hardware.hw_id}; {plan.text}")
    programs = dataset_programs(from_dir, chosen, programs_per_task) if from_dir \
        else random_programs(chosen, target, programs_per_task)
    if not programs:
        raise click.ClickException(f"{from_dir}: no ok records of {suite}" if from_dir
                                   else f"no valid random program of {suite} could be drawn")
    verdict = check_overlap(hardware, plan, str(target), programs, log=lambda text: click.echo(text, err=True))
    click.echo("\n".join(verdict.lines()))
    click.echo(f"saved: {save_verdict(verdict, hardware, plan)}")


@main.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--replay", "replay_count", type=click.IntRange(min=0), default=20, show_default=True,
              help="Random traces replayed to confirm they rebuild the recorded program (0: skip).")
@click.option("--rebuild-manifest", is_flag=True,
              help="First rewrite manifest.json from the shards on disk (after a killed write).")
def validate(data_dir: str, replay_count: int, rebuild_manifest: bool) -> None:
    """Check a dataset folder: schema, ids, duplicates, checksums, and that stored traces replay.

    Exit code 0 when valid, 1 with one line per problem (file and row) otherwise.
    """
    from cwm_bench.validate import validate_dataset

    if rebuild_manifest:
        from cwm_bench.rows.reader import DatasetIntegrityError
        from cwm_bench.rows.store import DatasetBusyError, DatasetStore

        if os.path.isdir(os.path.join(data_dir, "data")) and not os.path.exists(
                os.path.join(data_dir, "manifest.json")):
            raise click.ClickException(f"{data_dir}: a release folder has no manifest to rebuild "
                                       "(its checksums come from `cwm-bench release`)")
        try:
            with DatasetStore(data_dir) as store:
                store.write_manifest()
        except (DatasetBusyError, DatasetIntegrityError) as exc:
            raise click.ClickException(str(exc)) from exc

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
    from cwm_bench.rows.store import DATASET_ERRORS, DatasetStore

    try:
        with DatasetStore(data_dir) as store:
            for table in ("workloads", "records"):
                before, rows = store.compact(table)
                click.echo(f"{table}: {before} shard(s) -> 1, {rows} rows")
    except DATASET_ERRORS as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.argument("data_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="The merged dataset: a new (or empty) folder.")
@click.option("--conflicts", "conflicts_path", default=None, type=click.Path(dir_okay=False),
              help="Also write every conflicting duplicate to this file (JSON lines).")
def merge(data_dirs: tuple[str, ...], out_dir: str, conflicts_path: str | None) -> None:
    """Merge collection folders of several collectors (different machines, one target kind) into one.

    Records are keyed by (record_id, hw_id): identical duplicates are dropped; duplicates that disagree
    (two collectors measured the same program: give each collector its own --seed) are reported and the
    earlier measurement kept. The sources are only read. Only workloads and records are merged: run
    `cwm-bench noise` on the merged folder.
    """
    import dataclasses
    import json

    from cwm_bench.merge import MergeError, merge_datasets
    from cwm_bench.rows.store import DATASET_ERRORS

    try:
        report = merge_datasets(list(data_dirs), out_dir)
    except (MergeError, *DATASET_ERRORS) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(report)
    if conflicts_path:
        with open(conflicts_path, "w") as handle:
            for conflict in report.conflicts:
                handle.write(json.dumps(dataclasses.asdict(conflict)) + "\n")
        click.echo(f"{len(report.conflicts)} conflict(s) written to {conflicts_path}")


@main.command("import-metaschedule")
@click.argument("db_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
def import_metaschedule(db_dirs: tuple[str, ...], out_dir: str) -> None:
    """Read MetaSchedule JSON databases (database_workload.json + database_tuning_record.json, as
    `ms.tune_tir` writes them) into a CWM-Bench dataset (origin `imported`, features recomputed)."""
    from cwm_bench.import_ms import ImportError_, import_databases
    from cwm_bench.rows.store import DATASET_ERRORS

    try:
        report = import_databases(list(db_dirs), out_dir)
    except (ImportError_, *DATASET_ERRORS) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(report)
