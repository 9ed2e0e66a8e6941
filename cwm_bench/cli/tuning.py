"""Commands of the tuning stage: tune, tune-report, e2e."""

from __future__ import annotations

import click

from cwm_bench.cli import main
from cwm_bench.cli.models import include_option

COUNT = click.IntRange(min=1)


@main.command()
@include_option
@click.option("--model", "models", multiple=True, metavar="[LABEL=]NAME|CKPT",
              help="A cost model to tune with (repeatable): a checkpoint folder (frozen unless --online), a "
                   "registered model name (learns online from random scores), or a baseline name.")
@click.option("--baselines", default="", metavar="LIST",
              help="Comma-separated baselines in the same runs: ansor (TVM's XGBModel from scratch), "
                   "ansor-pretrained (needs --pretrained), random.")
@click.option("--pretrained", default=None, type=click.Path(exists=True, file_okay=False),
              help="The ansor-xgb checkpoint the ansor-pretrained baseline uses.")
@click.option("--online", is_flag=True, help="Refit checkpoints on each run's own measurements after every batch.")
@click.option("--target", "target_kind", type=click.Choice(["llvm"]), default="llvm", show_default=True,
              help="This machine's CPU (GPU tuning: docs/cuda.md).")
@click.option("--workloads", "workload_specs", multiple=True, metavar="SPEC",
              help="Tasks to tune, each on its own (repeatable): a suite spec (mini, cpu-v0:matmul), a dataset "
                   "folder (DIR, or DIR:by_network for a split's test tasks) or a MetaSchedule database folder.")
@click.option("--network", default=None, metavar="NAME",
              help="Tune every task of a network together, budget shared by MetaSchedule's task scheduler "
                   "with the network's task weights (resnet18, resnet50, mobilenet_v2, bert_base_layer, "
                   "vit_b16_block).")
@click.option("--budget", default=64, show_default=True, type=COUNT, help="Real measurements per task.")
@click.option("--per-iter", default=16, show_default=True, type=COUNT, help="Candidates measured per search round.")
@click.option("--seeds", default=5, show_default=True, type=COUNT, help="Runs per (task, model): seeds 0..S-1.")
@click.option("--first-seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: one dataset folder per run (resumed when it exists).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def tune(models, baselines, pretrained, online, target_kind, workload_specs, network, budget, per_iter, seeds,
         first_seed, out_dir, no_progress) -> None:
    """Tune tasks with MetaSchedule's evolutionary search and each model as its cost model.

    Every model gets the same search (TVM's default evolutionary-search parameters), seeds, builder,
    measurer and protocol; exactly --budget measurements per task. Every measurement is a row of
    OUT/<task>/<model>/seed-<k>/ (origin `tuning`, a dataset folder) with its trial index in
    `trials/`; a killed run resumes where it stopped when the command is run again.

    \b
      cwm-bench tune --model reference_model/checkpoints/cpu-v0-by_network-seed0 \\
          --baselines ansor,random --workloads datasets/cwm-bench-cpu-v0:by_network \\
          --budget 64 --seeds 5 --out tuning/by_network
      cwm-bench tune-report tuning/by_network --png curves.png
      cwm-bench tune --network resnet18 --model ckpt/wm --budget 64 --seeds 1 --out tuning/resnet18
      cwm-bench e2e --network resnet18 --tuned tuning/resnet18
    """
    from cwm_bench.tuning.contenders import ContenderError, parse_contender
    from cwm_bench.tuning.tasks import WorkloadSpecError, resolve_workloads
    from cwm_bench.tuning.tune import TuneConfig, TuneGroup, tune_all

    entries = [*models, *[b.strip() for b in baselines.split(",") if b.strip()]]
    if not entries:
        raise click.UsageError("give --model and/or --baselines")
    if bool(workload_specs) == bool(network):
        raise click.UsageError("give either --workloads or --network")
    try:
        contenders = [parse_contender(e, pretrained, online) for e in entries]
    except ContenderError as exc:
        raise click.BadParameter(str(exc), param_hint="--model/--baselines") from exc
    from cwm_bench.tuning.run_log import RunKey

    labels = [c.label for c in contenders]
    if len({RunKey("", label, 0).folder("") for label in labels}) != len(labels):  # folder names must differ too
        raise click.BadParameter(f"two models share a label ({', '.join(labels)}); name them LABEL=SPEC",
                                 param_hint="--model")
    try:
        if network:
            from cwm_bench.workload.relax_import import network_names, network_workloads

            if network not in network_names():
                raise click.BadParameter(f"unknown network {network!r}; known: {', '.join(network_names())}",
                                         param_hint="--network")
            groups = [TuneGroup.network(network, network_workloads(network, target_kind))]
        else:
            groups = [TuneGroup.task(w) for w in resolve_workloads(list(workload_specs), target_kind)]
    except WorkloadSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--workloads") from exc
    tasks = sum(len(g.workloads) for g in groups)
    click.echo(f"tuning {tasks} task(s) x {len(contenders)} model(s) x {seeds} seed(s), {budget} trials per task "
               f"-> {out_dir}", err=True)
    config = TuneConfig(budget=budget, per_iter=per_iter)
    from cwm_bench.tuning.run_log import RunMismatchError

    try:
        tune_all(groups, contenders, list(range(first_seed, first_seed + seeds)), config, out_dir,
                 progress=not no_progress, echo=lambda line: click.echo(line, err=True))
    except RunMismatchError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("tune-report")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--reference", default="ansor", show_default=True, help="The label speedups are relative to.")
@click.option("--budget", default=64, show_default=True, type=COUNT, help="Trials per task the table compares at.")
@click.option("--tolerance", default=0.02, show_default=True, type=click.FloatRange(0, 1),
              help="'Trials to match': within this fraction of the reference's best at its largest budget.")
@click.option("--png", default=None, type=click.Path(dir_okay=False), help="Best-latency-vs-trials curves here.")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="The table as JSON here.")
def tune_report(dirs, reference, budget, tolerance, png, json_out) -> None:
    """Speedups over a reference (95% bootstrap CIs), wins, trials to match, time split, per-task bests.

    DIRS are `cwm-bench tune --out` folders (several are merged: e.g. a 64-trial and a 640-trial run).
    """
    import dataclasses
    import json

    from cwm_bench.tuning.render import markdown, plot_curves
    from cwm_bench.tuning.summary import TuneReportError, load_runs, summarize_runs

    try:
        runs = load_runs(list(dirs))
        rows, facts = summarize_runs(runs, reference, budget, tolerance)
    except TuneReportError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(markdown(rows, facts, runs))
    if png:
        plot_curves(runs, reference, budget, png)
        click.echo(f"wrote {png}", err=True)
    if json_out:
        with open(json_out, "w") as handle:
            json.dump({"facts": facts, "rows": [dataclasses.asdict(r) for r in rows]}, handle, indent=1)
        click.echo(f"wrote {json_out}", err=True)


@main.command()
@click.option("--network", required=True, metavar="NAME",
              help="resnet18, resnet50, mobilenet_v2, bert_base_layer or vit_b16_block (plain torch, random weights).")
@click.option("--tuned", "tuned_dirs", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="A `cwm-bench tune --out` folder (repeatable): each task's fastest record is used.")
@click.option("--label", "labels", multiple=True, help="Use only the runs of this model label (repeatable).")
@click.option("--threads", default=None, type=COUNT, help="Threads for TVM and PyTorch alike [all usable cores].")
@click.option("--rounds", default=15, show_default=True, type=COUNT, help="Interleaved timing rounds.")
@click.option("--no-torch-compile", is_flag=True, help="Skip torch.compile (it compiles C++ with inductor).")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="The result as JSON here.")
def e2e(network, tuned_dirs, labels, threads, rounds, no_torch_compile, json_out) -> None:
    """Compile a network with Relax and the tuned schedules; time it against PyTorch in one run.

    Same CPU, thread count and inputs for all; outputs are compared (max abs error printed); tasks
    that had no tuned record keep TVM's default schedules and are listed.

    \b
      cwm-bench tune --network resnet18 --model ckpt/wm --budget 64 --seeds 1 --out tuning/resnet18
      cwm-bench e2e --network resnet18 --tuned tuning/resnet18
    """
    import dataclasses
    import json
    import os

    if threads:  # before TVM's thread pool starts
        os.environ["TVM_NUM_THREADS"] = str(threads)
    from cwm_bench.tuning.e2e import E2EError, run_e2e

    try:
        result = run_e2e(network, list(tuned_dirs), list(labels) or None, threads, rounds, not no_torch_compile,
                         log=lambda line: click.echo(line, err=True))
    except E2EError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in result.lines():
        click.echo(line)
    if json_out:
        with open(json_out, "w") as handle:
            json.dump(dataclasses.asdict(result), handle, indent=1)
