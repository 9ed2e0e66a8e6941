"""Commands of the model stage: train, evaluate, report."""

from __future__ import annotations

import click

from cwm_bench.cli import main


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


def _side_of(data_dir: str, split: str, side: str, inputs):
    """The records a command works on, reading only the model's declared `inputs`: everything for
    `all` (collection folders have no split columns), else one side ("train"/"test") of the release's
    `split_<scheme>` column."""
    from cwm_bench.model import load_side
    from cwm_bench.rows.reader import NotADatasetError

    try:
        loaded = load_side(data_dir, split, "all" if split == "all" else side, inputs)
    except (NotADatasetError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not len(loaded):
        raise click.ClickException(f"{data_dir}: no ok records on the {side} side of split {split!r}")
    return loaded


def _include(ctx, param, values: tuple[str, ...]) -> tuple[str, ...]:
    """Import each --include module now, before --model is resolved."""
    from cwm_bench.model import include
    from cwm_bench.rows.integrity import one_line

    for spec in values:
        try:
            include(spec)
        except Exception as exc:  # noqa: BLE001  (any failure of a user's module is one clear line)
            raise click.BadParameter(f"{spec}: {type(exc).__name__}: {one_line(exc)}", param_hint="--include") from exc
    return values


include_option = click.option(
    "--include", "includes", multiple=True, callback=_include, is_eager=True, expose_value=False,
    metavar="MODULE", help="Import a file (my_model.py), package folder or module name that registers models "
                           "with @register_model (repeatable). Installed plugins (entry points in group "
                           "cwm_bench.models) need no --include.")


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
    from cwm_bench.model.registry import DuplicateModelError, UnknownModelError

    try:
        return create_model(name, **config)
    except (UnknownModelError, DuplicateModelError) as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from exc
    except (TypeError, ValueError) as exc:
        message = str(exc)  # option errors already name the model
        raise click.BadParameter(message if message.startswith(name) else f"{name}: {message}",
                                 param_hint="--config") from exc


def _init_model(init_dir: str, name: str, config: dict):
    """The model of checkpoint `init_dir`, to continue training: it must be a `name` checkpoint, and
    `config` may change only the options its class lists in `fine_tune_options`."""
    from cwm_bench.model import CheckpointMismatchError, load_checkpoint
    from cwm_bench.model.base import read_checkpoint_config
    from cwm_bench.model.registry import UnknownModelError, model_class

    try:
        model_class(name)
    except UnknownModelError as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from exc
    try:
        saved, _ = read_checkpoint_config(init_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--init") from exc
    if saved != name:
        raise click.BadParameter(f"{init_dir} is a {saved!r} checkpoint, but --model is {name!r}", param_hint="--init")
    from cwm_bench.model import CheckpointError

    try:
        return load_checkpoint(init_dir, model=name, overrides=config)
    except CheckpointError as exc:
        raise click.BadParameter(str(exc), param_hint="--init") from exc
    except CheckpointMismatchError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from exc
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(f"{name}: {exc}", param_hint="--config") from exc


def _read_training(checkpoint: str) -> dict | None:
    from cwm_bench.model import CheckpointError
    from cwm_bench.model.training_record import read_training

    try:
        return read_training(checkpoint)
    except CheckpointError as exc:
        raise click.ClickException(str(exc)) from None


def _digest(data_dir: str) -> tuple[str, int]:
    """The dataset's digest over its files' real sha256 (the full integrity gate runs first)."""
    from cwm_bench.results import dataset_digest

    try:
        return dataset_digest(data_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def _check_out(out_dir: str) -> None:
    """--out may be new, empty, or a checkpoint (replaced whole): never a dataset or another folder."""
    import os

    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise click.BadParameter(f"{out_dir} is a file", param_hint="--out")
    if os.path.exists(os.path.join(out_dir, "config.json")) and not os.path.exists(
            os.path.join(out_dir, "manifest.json")):
        return  # a checkpoint (whatever files its model keeps): replaced whole
    for marker in ("manifest.json", "checksums.sha256", "data", "records"):
        if os.path.exists(os.path.join(out_dir, marker)):
            raise click.BadParameter(f"{out_dir} is a dataset folder (it has {marker}); a checkpoint needs its own "
                                     "folder", param_hint="--out")
    if os.listdir(out_dir):
        raise click.BadParameter(f"{out_dir} is neither empty nor a checkpoint; choose a new folder",
                                 param_hint="--out")


def _replace_folder(out_dir: str, write) -> None:
    """Write a folder beside `out_dir`, then swap it in: no stale files of an earlier checkpoint, and
    nothing half-written if training or saving fails."""
    import os
    import shutil
    import tempfile

    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".partial-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would survive the rename
    try:
        write(staging)
        if os.path.exists(out_dir):
            old = tempfile.mkdtemp(prefix=".old-", dir=parent)
            os.rename(out_dir, os.path.join(old, "ckpt"))
            os.rename(staging, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, out_dir)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)


@main.command()
@click.option("--model", "model_name", required=True,
              help="A registered model: built-in (random, flops, ansor-xgb, ansor-xgb-rank, tenset-mlp, tlp, "
                   "world-model), from an installed plugin, or from an --include module.")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Dataset folder (collection or release).")
@click.option("--split", type=click.Choice(SPLIT_SCHEMES), required=True,
              help="all: every ok record (collection folders). A scheme: that scheme's train side (release folders).")
@click.option("--config", "config_json", default=None, help="Model options as a JSON object, or a JSON file.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Checkpoint folder to write.")
@click.option("--init", "init_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Continue training this checkpoint of the same --model (fine-tuning); --config may change only "
                   "training options (e.g. epochs, lr, num_boost_round).")
@click.option("--max-train-records", type=click.IntRange(min=1), default=None,
              help="Train on a seeded random sample of this many records of the train side.")
@click.option("--seed", "sample_seed", type=int, default=None,
              help="Seed of the --max-train-records sample (default 0). The model's own seed is a --config option.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@include_option
def train(model_name: str, data_dir: str, split: str, config_json: str | None, out_dir: str, init_dir: str | None,
          max_train_records: int | None, sample_seed: int | None, no_progress: bool) -> None:
    """Fit a cost model on a dataset's training records and save a checkpoint (no pickles).

    \b
    cwm-bench train --model ansor-xgb --data release/cpu-v0 --split by_network --out ckpt/xgb
    cwm-bench evaluate --model ckpt/xgb --data release/cpu-v0 --split by_network --json xgb.json
    cwm-bench train --model ansor-xgb --init ckpt/xgb --data release/h200-v0 --split within_task \\
        --max-train-records 300 --out ckpt/xgb-h200-300   # fine-tune on 300 records of other hardware
    cwm-bench train --include my_model.py --model my-model --data release/cpu-v0 --split by_network \\
        --out ckpt/mine                                   # an outside model (docs/adding-a-model.md)
    """
    import os
    import time

    from cwm_bench.model import CheckpointError
    from cwm_bench.model.training_record import training_record, write_training
    from cwm_bench.rows.integrity import one_line

    if sample_seed is not None and max_train_records is None:
        raise click.BadParameter("seeds the --max-train-records sample; give that too", param_hint="--seed")
    if init_dir is not None and os.path.realpath(init_dir) == os.path.realpath(out_dir):
        raise click.BadParameter("must differ from --init (the checkpoint to start from stays as it is)",
                                 param_hint="--out")
    _check_out(out_dir)
    config = _model_config(config_json)
    model = _create_model(model_name, config) if init_dir is None else _init_model(init_dir, model_name, config)
    trained = _side_of(data_dir, split, "train", model.inputs)
    available = len(trained)
    seed = 0 if sample_seed is None else sample_seed
    if max_train_records is not None:
        trained = trained.sample(max_train_records, seed)
    tasks = len(set(trained.task_ids))
    sampled = f" (a seed-{seed} sample of {available:,})" if len(trained) < available else ""
    start = f"fine-tuning {init_dir}" if init_dir else f"training {model_name}"
    click.echo(f"{start} on {len(trained):,} records{sampled} of {tasks} tasks ({split})", err=True)
    digest, _ = _digest(data_dir)  # before fitting: a dataset that fails the full check leaves no checkpoint
    try:  # before fitting too: reads the --init checkpoint's own record
        record = training_record(data_dir, split, trained, init_dir, max_train_records, seed, digest)
    except CheckpointError as exc:
        raise click.ClickException(str(exc)) from None
    started = time.perf_counter()
    try:
        if init_dir is None:
            model.fit(trained.labelled(), progress=not no_progress)
        else:
            model.fine_tune(trained.labelled(), progress=not no_progress)
    except (NotImplementedError, ValueError) as exc:
        raise click.ClickException(one_line(exc)) from exc
    _replace_folder(out_dir, lambda folder: (model.save(folder), write_training(folder, record)))
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
@click.option("--label", default=None,
              help="Row name in `cwm-bench report` instead of the model's name (e.g. fine-tuned vs zero-shot).")
@click.option("--allow-overlap", is_flag=True,
              help="Score a checkpoint that trained on the evaluated tasks (by_network, by_operator) or records "
                   "(within_task, all) anyway; the result is marked contaminated.")
@include_option
def evaluate(model_ref: str, data_dir: str, split: str, json_out: str, config_json: str | None,
             label: str | None, allow_overlap: bool) -> None:
    """Score the test records with a model and write every ranking metric, with provenance, as JSON.

    The model sees only the input columns it declares (never latencies, status, origin, splits or
    times). A checkpoint whose training.json shows it trained on the test side's tasks (by_network,
    by_operator) or records (within_task, all) is refused unless --allow-overlap, which marks the
    result `contaminated: true`; one that cannot be checked is scored and marked `contaminated: null`.

    Metrics are computed per task, then averaged over tasks (plain and weighted by how often the
    task occurs in its networks, 1 for operator tasks) with bootstrap 95% intervals. Where the
    dataset carries re-measurements, OPA is also given as a fraction of the estimated accuracy of an
    oracle that knew the true latencies. The file also records the model and its config, the
    dataset's checksum, the split and the software versions (schema: `cwm_bench/results.py`).
    """
    import os
    import time

    import numpy as np

    from cwm_bench.metrics import TASK_METRICS, Evaluator
    from cwm_bench.model import load_checkpoint
    from cwm_bench.model.contamination import overlap
    from cwm_bench.model.registry import UnknownModelError
    from cwm_bench.model.training_record import training_summary
    from cwm_bench.noise import dataset_noise_reference
    from cwm_bench.results import EvaluationResult, git_commit, package_versions, utc_now

    checkpoint = None
    if os.path.isdir(model_ref):
        if config_json is not None:
            raise click.BadParameter("a checkpoint carries its own config", param_hint="--config")
        try:
            model = load_checkpoint(model_ref)
        except (FileNotFoundError, ValueError, KeyError, UnknownModelError) as exc:
            raise click.BadParameter(str(exc), param_hint="--model") from exc
        checkpoint = os.path.abspath(model_ref)
    else:
        model = _create_model(model_ref, _model_config(config_json))
        if model.trainable and not getattr(model, "is_fitted", False):
            raise click.BadParameter(f"{model_ref!r} must be trained first: `cwm-bench train --model {model_ref} "
                                     f"... --out CKPT`, then `--model CKPT`", param_hint="--model")
    side = "all" if split == "all" else "test"
    test = _side_of(data_dir, split, side, model.inputs)
    training = _read_training(checkpoint) if checkpoint else None  # what the checkpoint was trained on
    # a trainable model used by name (a plugin that loads pretrained weights itself) cannot be checked
    shared = overlap(training, split, test.task_ids, test.record_ids,
                     trained=checkpoint is not None or model.trainable)
    if shared.contaminated and not allow_overlap:
        raise click.ClickException(f"{model_ref} was {shared.describe()} of {split} ({side} side of "
                                   f"{data_dir}): refused; --allow-overlap scores it anyway, marked contaminated")
    if shared.contaminated is None:
        click.echo(f"warning: cannot check {model_ref} for contamination: {shared.describe()}", err=True)
    digest, files = _digest(data_dir)  # the full check before scoring: a corrupt file stops here
    started = time.perf_counter()
    scores = np.asarray(model.score(test.records), dtype=np.float64)
    score_s = time.perf_counter() - started
    if scores.shape != (len(test),):
        raise click.ClickException(f"{model.name}.score returned {scores.shape} scores for {len(test)} records")
    # Where the dataset carries re-measurements: the agreement of two runs, and the estimated accuracy
    # of an oracle that knew the true latencies, over the evaluated tasks (cwm_bench/noise.py).
    noise = dataset_noise_reference(data_dir, test.task_ids)
    oracle = noise.get("oracle_opa") if noise else None
    metrics = Evaluator(reference={"opa": oracle} if oracle else None).eval(
        {"task_id": test.task_ids, "y_true_latency": test.latency_s, "y_score": scores,
         "task_weight": test.task_weights()})
    result = EvaluationResult(
        model=model.name, model_config=model.config, checkpoint=checkpoint,
        dataset_id=os.path.basename(os.path.normpath(os.path.abspath(data_dir))), dataset_sha256=digest,
        dataset_files=files, split=split, split_side=side, num_tasks=metrics["num_tasks"],
        num_programs=metrics["num_programs"], metrics={m: metrics[m] for m in TASK_METRICS},
        per_task=metrics["per_task"], versions=package_versions(), git_commit=git_commit(), created_at=utc_now(),
        notes={"score_seconds": round(score_s, 3), "inputs": sorted(model.inputs),
               "two_run_agreement_opa": noise.get("two_run_agreement") if noise else None,
               "oracle_opa_estimate": oracle, "overlap": shared.to_dict(),
               **({"training": training_summary(training)} if training else {})},
        label=label, contaminated=shared.contaminated)
    result.write(json_out)
    mark = "  [CONTAMINATED: " + shared.describe() + "]" if shared.contaminated else ""
    click.echo(f"{label or model.name} on {result.dataset_id} ({split}, {side}): {result.num_programs:,} programs, "
               f"{result.num_tasks} tasks{mark}")
    for m in TASK_METRICS:
        e = metrics[m]
        share = f"  ({e['fraction_of_oracle']:.1%} of the estimated oracle)" if "fraction_of_oracle" in e else ""
        click.echo(f"  {m:<13} {e['mean']:.4f}  [{e['ci_low']:.4f}, {e['ci_high']:.4f}]  "
                   f"weighted {e['weighted_mean']:.4f}{share}")
    click.echo(f"wrote {json_out}")
