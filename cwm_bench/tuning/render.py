"""The tuning report as text (Markdown) and as pictures (best latency against trials)."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from cwm_bench.tuning.summary import Row, Run, best_at, per_task_table


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def markdown(rows: list[Row], facts: dict, runs: list[Run]) -> str:
    ref, budget = facts["reference"], facts["budget"]
    lines = [f"Speedup over `{ref}` at {budget} trials per task (geomean of {ref} best / model best over "
             "(task, seed) pairs, 95% bootstrap CI over tasks, then seeds; > 1 = faster kernels)", "",
             "| model | tasks | seeds | speedup | 95% CI | wins | trials to match | model ms/trial | "
             "model / measure | tuned on | trained on | zero-shot |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        zero = "–" if r.zero_shot is None else ("yes" if r.zero_shot else "no")
        match = "–" if not facts["long_budget"] else (str(r.trials_to_match) if r.trials_to_match else
                                                      f"> {max(x.budget for x in runs if x.label == r.label)}")
        lines.append(f"| {r.label} | {r.tasks} | {r.seeds} | {_fmt(r.geomean, '.3f')}× | "
                     f"{_fmt(r.low, '.3f')}–{_fmt(r.high, '.3f')} | {_fmt(100 * r.wins, '.0f')}% ({r.pairs}"
                     f"{f', {r.invalid} invalid' if r.invalid else ''}) | "
                     f"{match} | {_fmt(1000 * r.seconds_per_trial['model_s'], '.1f')} | "
                     f"{_fmt(100 * r.model_share_of_measure, '.0f')}% | "
                     f"{r.hardware} | {r.trained_on} | {zero} |")
    for r in (r for r in rows if r.other_cpu):
        lines += ["", f"`{r.label}` was trained on {r.trained_on} and tunes on {r.hardware}: a different CPU "
                      "(its figures include the transfer)."]
    if facts["long_budget"]:
        lines += ["", f"Trials to match: fewest trials whose best is within {100 * facts['tolerance']:.0f}% (geomean "
                      f"over {facts['long_budget_tasks']} tasks, median over seeds) of `{ref}`'s best at "
                      f"{facts['long_budget']} trials."]
    else:
        lines += ["", f"Trials to match: `{ref}` has no run with more than {budget} trials here."]
    lines += ["", "Wall time per trial (seconds)", "", "| model | model | search | build | measure | log |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        s = r.seconds_per_trial
        lines.append(f"| {r.label} | " + " | ".join(_fmt(s[k], ".3f") for k in
                                                      ("model_s", "search_s", "build_s", "measure_s", "log_s")) + " |")
    tasks, labels, cells = per_task_table(runs, budget)
    lines += ["", f"Best latency per task at {budget} trials (µs, median over seeds)", "",
              "| task | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(_fmt(1e6 * cells[(t, lab)], ".1f") if (t, lab) in cells else "–"
                                               for lab in labels) + " |")
    if facts["unfinished"]:
        lines += ["", f"{len(facts['unfinished'])} unfinished run(s) (counted up to their last trial): "
                  + ", ".join(facts["unfinished"][:5])]
    return "\n".join(lines)


def plot_curves(runs: list[Run], reference: str, budget: int, png: str) -> None:
    """Geomean over tasks of (best so far / the reference's median best at `budget`), per model,
    median over seeds with the seeds' range as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref_best: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        if r.label == reference:
            for w in r.curves:
                value = best_at(r, w, budget)
                if math.isfinite(value):
                    ref_best[w].append(value)
    norm = {w: float(np.median(v)) for w, v in ref_best.items()}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label in sorted({r.label for r in runs}):
        per_seed = []
        for seed in sorted({r.seed for r in runs if r.label == label}):
            curves = {w: c for r in runs if r.label == label and r.seed == seed
                      for w, c in r.curves.items() if w in norm}
            if not curves:
                continue
            length = min(len(c) for c in curves.values())
            per_seed.append(np.exp(np.mean([np.log(c[:length] / norm[w]) for w, c in curves.items()], axis=0)))
        if not per_seed:
            continue
        length = min(len(c) for c in per_seed)
        stack = np.stack([c[:length] for c in per_seed])
        x = np.arange(1, length + 1)
        finite = np.isfinite(stack).all(axis=0)
        line, = ax.plot(x[finite], np.median(stack, axis=0)[finite], label=f"{label} ({len(per_seed)} seeds)")
        ax.fill_between(x[finite], stack.min(axis=0)[finite], stack.max(axis=0)[finite], alpha=0.15,
                        color=line.get_color())
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("trials (measurements) per task")
    ax.set_ylabel(f"best latency / {reference}'s best at {budget}\n(geomean over {len(norm)} tasks)")
    ax.set_yscale("log")
    ax.set_title("Best kernel found so far (lower is better; band: range over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
