"""Commands of the leaderboard stage: submit, leaderboard render."""

from __future__ import annotations

import os

import click

from cwm_bench.cli import main
from cwm_bench.cli.models import SPLIT_SCHEMES

DEFAULT_PUBLIC = "datasets/cwm-bench-cpu-v0"


@main.command()
@click.argument("submission_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help=f"Public dataset folder(s) to score on (repeatable; default {DEFAULT_PUBLIC}, or the dataset a "
                   "predictions file names, looked up under datasets/).")
@click.option("--split", "splits", multiple=True, type=click.Choice(SPLIT_SCHEMES[1:]),
              help="Split scheme(s) whose test side is scored (repeatable; default by_network; a predictions file "
                   "is scored on the split it names).")
@click.option("--private", "private_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A maintainer-held dataset folder that is not published (code submissions only; repeatable): "
                   "scored on the same --split test sides, or all its records if it has no split columns.")
@click.option("--live-budget", default=None, type=click.IntRange(min=1),
              help="Also tune held-out tasks live with the submission as MetaSchedule's cost model, this many "
                   "measurements per task, against ansor with the same seeds (code submissions only).")
@click.option("--live-tasks", default=2, show_default=True, type=click.IntRange(min=1),
              help="How many by_network test tasks (the fewest FLOPs first) the live score tunes.")
@click.option("--live-seeds", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--live-out", default="results/leaderboard-live", show_default=True, type=click.Path(file_okay=False),
              help="Tuning logs of the live score (the ansor reference runs are shared by all submissions).")
@click.option("--results", "results_dir", default=os.path.join("leaderboard", "results"), show_default=True,
              type=click.Path(file_okay=False), help="Where result files go: RESULTS/<org>__<model>/<version>.json.")
@click.option("--force", is_flag=True, help="Replace the result of a version submitted before.")
@click.option("--wall-s", default=900.0, show_default=True, type=click.FloatRange(min=1),
              help="Wall-time limit of the submitted code, for start-up and per scoring request.")
@click.option("--cpu-s", default=3600, show_default=True, type=click.IntRange(min=1),
              help="CPU-time limit of the submitted code's process, over its life.")
@click.option("--memory-gb", default=8.0, show_default=True, type=click.FloatRange(min=0.25),
              help="Address-space limit of the submitted code's process.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def submit(submission_dir, data_dirs, splits, private_dirs, live_budget, live_tasks, live_seeds, live_out, results_dir,
           force, wall_s, cpu_s, memory_gb, no_progress) -> None:
    """Validate a submission folder, score it without trusting it, and write its leaderboard result.

    SUBMISSION_DIR holds model_meta.yaml (leaderboard/README.md) and either code (a plugin module, package
    or wheel plus a checkpoint) or a predictions file (record_id,score for one public test side).
    Code runs in a separate process with CPU, wall-time and memory limits, in a new network namespace
    (as root) with TCP blocked, unable to read anything but the Python installation, /proc, its own
    copy and the inputs it is handed (Landlock; as user nobody where possible; refused where neither
    holds); it sees only the columns it declares, never labels. Only scores come back, checked for
    count and finiteness. A model whose checkpoint trained on the evaluated tasks or records, or whose
    metadata says so, is marked contaminated and not ranked. leaderboard/README.md has the details.

    \b
      cwm-bench submit leaderboard/submissions/world-model --split by_network
      cwm-bench submit my-model/ --private /srv/held-out-v1 --live-budget 64
      cwm-bench leaderboard render
    """
    from cwm_bench.leaderboard.live import LivePlan, live_score
    from cwm_bench.leaderboard.model_meta import ModelMetaError
    from cwm_bench.leaderboard.results_store import (
        RESULTS_SCHEMA_VERSION,
        ResultExistsError,
        check_writable,
        result_path,
        write_result,
    )
    from cwm_bench.leaderboard.sandbox import Limits, SubmissionError
    from cwm_bench.leaderboard.scoring import evaluate, open_model, private_isolation_problem
    from cwm_bench.leaderboard.submission import SubmissionFormatError, load_submission
    from cwm_bench.results import git_commit, nan_to_none, package_versions, utc_now
    from cwm_bench.rows.integrity import one_line
    from cwm_bench.rows.reader import NotADatasetError

    try:
        submission = load_submission(submission_dir)
    except (ModelMetaError, SubmissionFormatError) as exc:
        raise click.ClickException(str(exc)) from None
    meta = submission.meta
    out_path = result_path(results_dir, meta)
    try:
        check_writable(out_path, force)
    except ResultExistsError as exc:
        raise click.ClickException(str(exc)) from None
    predictions = submission.predictions
    if predictions is not None:
        if private_dirs or live_budget:
            raise click.UsageError("a predictions file scores one public test side; --private and --live-budget "
                                   "need a code submission")
        if splits and tuple(splits) != (predictions.split,):
            raise click.UsageError(f"the predictions file is for {predictions.split}; drop --split")
        data_dirs = data_dirs or (os.path.join("datasets", predictions.dataset),)
        if len(data_dirs) != 1 or os.path.basename(os.path.normpath(data_dirs[0])) != predictions.dataset:
            raise click.UsageError(f"the predictions file is for dataset {predictions.dataset}; --data must be that "
                                   "folder")
        if not os.path.isdir(data_dirs[0]):
            raise click.UsageError(f"{data_dirs[0]}: no such dataset folder; pass --data")
        splits = (predictions.split,)
    data_dirs = data_dirs or (DEFAULT_PUBLIC,)
    splits = splits or ("by_network",)
    for private in private_dirs:
        problem = private_isolation_problem(private)
        if problem:
            raise click.ClickException(f"--private {private}: refused: {problem}")
    plan = [(d, s, "public") for d in data_dirs for s in splits]
    plan += [(d, s if _has_splits(d) else "all", "private") for d in private_dirs for s in splits]
    limits = Limits(wall_s=wall_s, cpu_s=cpu_s, memory_gb=memory_gb)
    evaluations = []
    isolation: dict = {"kind": "predictions file (no code ran)"}
    model = None
    model_config = None
    try:
        if submission.code is not None:
            click.echo(f"{meta.name} {meta.version}: starting the sandbox", err=True)
            model = open_model(submission, limits)
            isolation, model_config = model.isolation, model.config
            click.echo(f"  model {model.name!r}, inputs {', '.join(sorted(model.inputs))}; "
                       f"{isolation['filesystem']}; user {isolation['user']}; network: {isolation['network']}",
                       err=True)
        for data_dir, split, visibility in dict.fromkeys(plan):
            click.echo(f"scoring {visibility} {os.path.basename(os.path.normpath(data_dir))} {split} ...", err=True)
            ev = evaluate(submission, data_dir, split, visibility, model)
            evaluations.append(ev.to_dict())
            mark = ("  [CONTAMINATED: " + "; ".join(ev.contamination) + "]" if ev.contaminated else
                    "  [unchecked]" if ev.contaminated is None else "")
            click.echo(f"  OPA {_interval(ev.metrics['opa'])} over {ev.num_tasks} tasks, {ev.num_programs:,} "
                       f"programs{mark}")
    except (SubmissionError, SubmissionFormatError) as exc:
        raise click.ClickException(f"{one_line(exc)}; nothing was written") from None
    except (NotADatasetError, ValueError, OSError) as exc:
        raise click.ClickException(f"{one_line(exc)}; nothing was written") from None
    finally:
        if model is not None:
            model.close()
    live = None
    if live_budget:
        click.echo(f"live tuning: {live_tasks} task(s) x {live_seeds} seed(s), {live_budget} trials each, against "
                   f"ansor -> {live_out}", err=True)
        try:
            live = live_score(submission, limits, LivePlan(live_budget, live_tasks, live_seeds, live_out),
                              progress=not no_progress)
        except Exception as exc:  # noqa: BLE001  (TVM wraps the model's errors in its own: one line either way)
            raise click.ClickException(f"live tuning: {type(exc).__name__}: {one_line(exc)[:400]}; nothing was "
                                       "written") from None
        click.echo(f"  speedup over ansor {_interval({'mean': live['speedup_geomean'], **live}, 'x')}, wins "
                   f"{live['wins'] if live['wins'] is None else format(live['wins'], '.0%')} of {live['pairs']}")
    data = {"schema_version": RESULTS_SCHEMA_VERSION, "meta": meta.to_dict(), "evaluations": evaluations,
            "live": live, "model_config": model_config, "submitted_at": utc_now(),
            "submission_sha256": submission.digest(),
            "versions": package_versions(), "git_commit": git_commit(), "isolation": isolation}
    try:
        write_result(out_path, nan_to_none(data), force)
    except (ResultExistsError, OSError, ValueError, TypeError) as exc:
        raise click.ClickException(f"{out_path}: {one_line(exc)}") from None
    click.echo(f"wrote {out_path}")


def _interval(m: dict, unit: str = "") -> str:
    """"0.7512 [0.7260, 0.7770]", with "n/a" for undefined values (e.g. OPA where no pair differs)."""
    f = lambda v: "n/a" if v is None else f"{v:.4f}{unit}"  # noqa: E731
    return f"{f(m.get('mean'))} [{f(m.get('ci_low'))}, {f(m.get('ci_high'))}]"


def _has_splits(folder: str) -> bool:
    import pyarrow.parquet as pq

    from cwm_bench.rows.reader import table_files

    files = table_files(folder, "records")
    return bool(files) and "split_by_network" in pq.ParquetFile(files[0]).schema_arrow.names


@main.group()
def leaderboard() -> None:
    """The leaderboard's page and tables, from the result files `cwm-bench submit` writes."""


@leaderboard.command("render")
@click.option("--results", "results_dir", default=os.path.join("leaderboard", "results"), show_default=True,
              type=click.Path(file_okay=False))
@click.option("--html", "html_out", default=os.path.join("leaderboard", "site", "index.html"), show_default=True,
              type=click.Path(dir_okay=False), help="The static page (one file, nothing fetched from outside).")
@click.option("--markdown", "md_out", default=os.path.join("leaderboard", "LEADERBOARD.md"), show_default=True,
              type=click.Path(dir_okay=False), help="The Markdown tables (the README links to them).")
def render_cmd(results_dir: str, html_out: str, md_out: str) -> None:
    """Render every result under --results as Markdown tables and a sortable static HTML page.

    \b
      cwm-bench leaderboard render                      # leaderboard/site/index.html + LEADERBOARD.md
      chromium leaderboard/site/index.html
    """
    from cwm_bench.leaderboard.render import build_boards, markdown, page
    from cwm_bench.leaderboard.results_store import LeaderboardResultError, load_results
    from cwm_bench.results import utc_now

    if not os.path.isdir(results_dir):
        raise click.ClickException(f"{results_dir}: no results yet (`cwm-bench submit DIR` writes them)")
    try:
        results = load_results(results_dir)
    except LeaderboardResultError as exc:
        raise click.ClickException(str(exc)) from None
    if not results:
        raise click.ClickException(f"{results_dir}: no result files")
    boards, live = build_boards(results)
    stamp = utc_now()
    for path, text in ((md_out, f"# CWM-Bench leaderboard\n\nGenerated {stamp} by `cwm-bench leaderboard render` from "
                                f"`{results_dir}`.\n\n" + markdown(boards, live)),
                       (html_out, page(boards, live, stamp))):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(text)
    click.echo(f"{len(results)} result file(s), {len(boards)} board(s): wrote {md_out} and {html_out}")
