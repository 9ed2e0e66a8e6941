"""Leaderboard-style report of evaluation results: a Markdown table and a bar chart with CIs.

Reads the JSON files `cwm-bench evaluate` writes (schema and validator: `cwm_bench/results.py`):
`model` (or `label`, when set), `split`, `dataset_id`, and under `metrics` one `{"mean",
"weighted_mean", "ci_low", "ci_high"}` dict per metric (null where undefined).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from cwm_bench.results import ResultSchemaError, validate_result

# (metric key in the result files, column header)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("opa", "OPA"), ("kendall_tau", "Kendall τ"), ("top1", "top-1"), ("top5", "top-5"),
    ("slowdown@1", "slowdown@1"), ("ndcg@10", "NDCG@10"))


class ResultsReportError(ValueError):
    """A result file that cannot be read; the message is one line naming the file."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def load_result(path: str) -> dict[str, Any]:
    """One result file, checked against `cwm_bench.results` (`ResultsReportError` otherwise)."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ResultsReportError(f"{path}: cannot read ({exc.strerror})") from exc
    except ValueError as exc:
        raise ResultsReportError(f"{path}: not valid JSON ({exc})".replace("\n", " ")) from exc
    try:
        validate_result(data)
    except ResultSchemaError as exc:
        raise ResultsReportError(f"{path}: not a cwm-bench result file: {exc}".replace("\n", " ")) from exc
    return data


def _cell(entry: Any) -> str:
    """`mean ± half-width of the 95% CI` (the bootstrap CI may be asymmetric; the table rounds it)."""
    if not isinstance(entry, dict) or _number(entry.get("mean")) is None:
        return "–"
    mean, low, high = (_number(entry.get(k)) for k in ("mean", "ci_low", "ci_high"))
    if low is None or high is None:
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {(high - low) / 2:.3f}"


CONTAMINATED_MARK = " ⚠ contaminated"
UNCHECKED_MARK = " ⚠ unchecked"


def _mark(r: dict[str, Any]) -> str:
    value = r.get("contaminated")  # None also for files older than the check: nothing is known
    return CONTAMINATED_MARK if value else UNCHECKED_MARK if value is None else ""


def _name(r: dict[str, Any]) -> str:
    """A row's model column: the result's label when `evaluate --label` set one, else the model name;
    marked when the model trained on what it was scored on (`evaluate --allow-overlap`) or when that
    could not be checked."""
    return (r.get("label") or r["model"]) + _mark(r)


def _label(r: dict[str, Any], with_dataset: bool) -> list[str]:
    return [_name(r), r["split"], *([r["dataset_id"]] if with_dataset else [])]


def _several_datasets(results: list[dict[str, Any]]) -> bool:
    return len({r["dataset_id"] for r in results}) > 1


def markdown_table(results: list[dict[str, Any]]) -> str:
    """Rows model x split (x dataset, when results come from several); cells `mean ± CI half-width`."""
    several = _several_datasets(results)
    header = ["model", "split", *(["dataset"] if several else []), *(title for _, title in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * (len(header) - len(COLUMNS)) + "---:|" * len(COLUMNS)]
    for r in sorted(results, key=lambda r: (r["dataset_id"], r["split"], _name(r))):
        cells = [*_label(r, several), *(_cell(r["metrics"].get(key)) for key, _ in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    marks = {_mark(r) for r in results}
    if CONTAMINATED_MARK in marks:
        lines.append(f"\n{CONTAMINATED_MARK.strip()}: trained on the tasks or records it was scored on "
                     "(scored with `evaluate --allow-overlap`); not comparable with the other rows.")
    if UNCHECKED_MARK in marks:
        lines.append(f"\n{UNCHECKED_MARK.strip()}: what it trained on is unknown (no ids in its training.json, "
                     "or a result file older than the check); it may have seen the test side.")
    return "\n".join(lines)


def bar_chart(results: list[dict[str, Any]], png: str, metric: str = "opa") -> None:
    """One bar per result file: the metric's mean over tasks, with its 95% CI as error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    rows = [r for r in results if _number((r["metrics"].get(metric) or {}).get("mean")) is not None]
    if not rows:
        raise ResultsReportError(f"no result file has a value for metric {metric!r}")
    rows.sort(key=lambda r: (r["dataset_id"], r["split"], _name(r)))
    several = _several_datasets(rows)
    means = [float(r["metrics"][metric]["mean"]) for r in rows]
    lows = [_number(r["metrics"][metric].get("ci_low")) for r in rows]
    highs = [_number(r["metrics"][metric].get("ci_high")) for r in rows]
    err = [[max(0.0, m - (lo if lo is not None else m)) for m, lo in zip(means, lows, strict=True)],
           [max(0.0, (hi if hi is not None else m) - m) for m, hi in zip(means, highs, strict=True)]]
    # Horizontal bars, first result on top: labels such as "tenset-mlp fine-tuned (300)" stay readable.
    fig = Figure(figsize=(7.0, max(2.0, 0.42 * len(rows) + 1.0)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh(range(len(rows)), means, xerr=err, capsize=3, color="#4C72B0")
    ax.set_yticks(range(len(rows)), [" · ".join(_label(r, several)) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (mean over tasks, 95% CI)")
    ax.grid(axis="x", alpha=0.3)
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    fig.savefig(png, dpi=120)


def report(result_paths: list[str], png: str | None = None, metric: str = "opa") -> str:
    """The Markdown table of all result files; also writes the bar chart of `metric` to `png`."""
    results = [load_result(p) for p in result_paths]
    if png:
        bar_chart(results, png, metric)
    return markdown_table(results)
