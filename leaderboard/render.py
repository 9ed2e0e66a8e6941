"""The leaderboard from `leaderboard/results/`: a Markdown table (for the README) and one static HTML
page (inline CSS, JS and SVG: nothing fetched from anywhere), a sortable table per (dataset, split)
with CIs, the noise reference and contamination marks, a live-tuning table, and a plot per board.

Ranking: by mean OPA over tasks. Contaminated entries (trained on the evaluated tasks or records,
by their checkpoint's ids or their own metadata) are listed, marked and never given a rank;
entries whose training cannot be checked are ranked and marked "unchecked".
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any

from cwm_bench.metrics.ranking import METRIC_DIRECTION

COLUMNS = ("opa", "kendall_tau", "top1", "slowdown@1", "ndcg@10")
RANK_METRIC = "opa"


@dataclass
class Entry:
    name: str
    version: str
    kind: str
    code_url: str
    num_parameters: int
    evaluation: dict[str, Any]
    submitted_at: str
    rank: int | None = None

    @property
    def flag(self) -> str:
        c = self.evaluation.get("contaminated")
        return "contaminated" if c else ("unchecked" if c is None else "")


@dataclass
class Board:
    visibility: str
    dataset_id: str
    split: str
    dataset_sha256: str = ""
    entries: list[Entry] = field(default_factory=list)
    noise: dict[str, Any] = field(default_factory=dict)
    versioned: bool = False  # another board has the same dataset id with other data: say which

    @property
    def title(self) -> str:
        data = f"{self.dataset_id} (data {self.dataset_sha256[:8]})" if self.versioned else self.dataset_id
        return f"{data} · {self.split}" + (" (private test set)" if self.visibility == "private" else "")

    @property
    def anchor(self) -> str:
        name = f"{self.visibility}-{self.dataset_id}-{self.split}" + (f"-{self.dataset_sha256[:8]}" if self.versioned
                                                                      else "")
        return "".join(ch if ch.isalnum() else "-" for ch in name)


def _fmt(value: Any, spec: str = ".3f", suffix: str = "") -> str:
    return f"{value:{spec}}{suffix}" if isinstance(value, int | float) and math.isfinite(value) else "–"


def _mean(e: Entry, metric: str) -> float | None:
    value = (e.evaluation.get("metrics", {}).get(metric) or {}).get("mean")
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def build_boards(results: list[dict[str, Any]]) -> tuple[list[Board], list[dict[str, Any]]]:
    """Boards sorted public first, then by dataset and split; entries ranked; and the live rows."""
    boards: dict[tuple[str, str, str], Board] = {}
    live = []
    for r in results:
        meta = r["meta"]
        for ev in r["evaluations"]:
            key = (ev["visibility"], ev["dataset_id"], ev["split"], ev["dataset_sha256"])
            board = boards.setdefault(key, Board(*key))
            board.entries.append(Entry(meta["name"], meta["version"], meta["submission"]["kind"], meta["code_url"],
                                       meta["num_parameters"], ev, r["submitted_at"]))
            if (ev.get("noise") or {}).get("oracle_opa") is not None:
                board.noise = ev["noise"]
        if r.get("live"):
            live.append({"name": meta["name"], "version": meta["version"], **r["live"]})
    ordered = sorted(boards.values(), key=lambda b: (b.visibility != "public", b.dataset_id, b.split,
                                                     b.dataset_sha256))
    for board in ordered:
        board.versioned = sum((b.visibility, b.dataset_id, b.split) == (board.visibility, board.dataset_id,
                                                                         board.split) for b in ordered) > 1
        def order(e: Entry) -> tuple:
            value = _mean(e, RANK_METRIC)
            return (e.flag == "contaminated", -(value if value is not None else -math.inf), e.name, e.version)
        board.entries.sort(key=order)
        rank = 0
        for e in board.entries:
            if e.flag != "contaminated":
                rank += 1
                e.rank = rank
    live.sort(key=lambda x: -(x.get("speedup_geomean") or 0))  # undefined speedups last
    return ordered, live


def _cell(metrics: dict, metric: str) -> str:
    m = metrics.get(metric) or {}
    if m.get("mean") is None:
        return "–"
    if m.get("ci_low") is None or m.get("ci_high") is None:
        return f"{m['mean']:.3f}"
    return f"{m['mean']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def _flag_text(e: Entry) -> str:
    if e.flag == "contaminated":
        return "⚠ contaminated: " + "; ".join(e.evaluation.get("contamination") or [])
    if e.flag == "unchecked":
        return "⚠ unchecked"
    if e.evaluation.get("checked_by") == "metadata":
        return "declared clean (predictions: no checkpoint to check)"
    return ""


def _noise_line(noise: dict) -> str:
    return (f"two-run agreement {_fmt(noise.get('two_run_agreement'))}, estimated oracle OPA "
            f"{_fmt(noise.get('oracle_opa'))}")


def _live_cells(x: dict) -> tuple[str, str, str]:
    """(speedup, CI, wins) as text; "–" where undefined (no finite pair)."""
    return (_fmt(x.get("speedup_geomean"), suffix="×"),
            f"[{_fmt(x.get('ci_low'))}, {_fmt(x.get('ci_high'))}]",
            f"{_fmt(x.get('wins'), '.0%')} of {x.get('pairs', 0)}")


def markdown(boards: list[Board], live: list[dict[str, Any]]) -> str:
    out = []
    for b in boards:
        out.append(f"#### {b.title}\n")
        if b.noise.get("oracle_opa") is not None:
            out.append(f"Noise reference: {_noise_line(b.noise)}.\n")
        head = ["#", "model", "version", *(f"{m} ({'↑' if METRIC_DIRECTION[m] == 'higher' else '↓'})" for m in COLUMNS),
                "tasks", "programs", "flag"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for e in b.entries:
            ev = e.evaluation
            out.append("| " + " | ".join([str(e.rank or "–"), e.name, e.version,
                                           *(_cell(ev["metrics"], m) for m in COLUMNS),
                                           str(ev.get("num_tasks", "")), f"{ev.get('num_programs', 0):,}",
                                           _flag_text(e)]) + " |")
        out.append("")
    if live:
        out.append("#### Live tuning (speedup of the best latency over `ansor`, same seeds and search)\n")
        out.append("| model | version | speedup [95% CI] | wins | budget | tasks × seeds | tuned on | trained on |")
        out.append("|---|---|---|---|---|---|---|---|")
        for x in live:
            speedup, ci, wins = _live_cells(x)
            out.append(f"| {x['name']} | {x['version']} | {speedup} {ci} | {wins} | {x['budget']} | "
                       f"{len(x['tasks'])} × {len(x['seeds'])} | {x['tuned_on']} | {x['trained_on']} |")
        out.append("")
    return "\n".join(out)


# -- the page ------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;
  color:#222}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
.scroll{overflow-x:auto} table{border-collapse:collapse;width:100%;margin:.6rem 0 1.6rem;font-size:.92rem}
th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;white-space:nowrap}
th{cursor:pointer;background:#f4f4f4;user-select:none} th:hover{background:#e8e8e8}
th.sorted-asc::after{content:" ▲"} th.sorted-desc::after{content:" ▼"}
tr.contaminated td{color:#999} .flag{color:#b35900;white-space:normal}
td.num{font-variant-numeric:tabular-nums} .noise{color:#555;font-size:.9rem}
svg text{font-size:11px;font-family:system-ui,sans-serif}
"""

_JS = """
function sortTable(th){
  const table=th.closest('table'), idx=[...th.parentNode.children].indexOf(th);
  const asc=th.classList.contains('sorted-desc') ? true : th.classList.contains('sorted-asc') ? false
            : th.dataset.dir==='lower';
  table.querySelectorAll('th').forEach(h=>h.classList.remove('sorted-asc','sorted-desc'));
  th.classList.add(asc?'sorted-asc':'sorted-desc');
  const body=table.tBodies[0], rows=[...body.rows];
  const key=r=>{const c=r.cells[idx], v=c.dataset.v;
    return th.dataset.type==='num' ? (v===''?NaN:parseFloat(v)) : c.textContent;};
  rows.sort((a,b)=>{const x=key(a), y=key(b);
    if(th.dataset.type==='num'){ if(isNaN(x)&&isNaN(y))return 0; if(isNaN(x))return 1; if(isNaN(y))return -1;
      return asc? x-y : y-x; }
    return asc? x.localeCompare(y) : y.localeCompare(x);});
  rows.forEach(r=>body.appendChild(r));
}
document.querySelectorAll('th').forEach(th=>th.addEventListener('click',()=>sortTable(th)));
"""


def _num(value: Any) -> str:
    return "" if not isinstance(value, int | float) or not math.isfinite(value) else repr(float(value))


def _th(label: str, kind: str, direction: str = "higher") -> str:
    return f'<th data-type="{kind}" data-dir="{direction}">{html.escape(label)}</th>'


def _board_html(b: Board) -> str:
    e_ = html.escape
    parts = [f'<h2 id="{b.anchor}">{e_(b.title)}</h2>']
    if b.noise.get("oracle_opa") is not None:
        parts.append(f'<p class="noise">Noise reference: {e_(_noise_line(b.noise))} (the OPA an oracle that knew '
                     f'the true latencies would reach against these labels). Data sha256 {e_(b.dataset_sha256[:16])}.'
                     '</p>')
    parts.append(_plot(b))
    heads = [_th("#", "num", "lower"), _th("model", "text"), _th("version", "text"), _th("kind", "text")]
    heads += [_th(f"{m} {'↑' if METRIC_DIRECTION[m] == 'higher' else '↓'}", "num", METRIC_DIRECTION[m])
              for m in COLUMNS]
    heads += [_th("tasks", "num"), _th("programs", "num"), _th("parameters", "num"), _th("flag", "text")]
    parts.append(f'<div class="scroll"><table class="board" data-board="{b.anchor}"><thead><tr>{"".join(heads)}</tr>'
                 '</thead><tbody>')
    for e in b.entries:
        ev = e.evaluation
        cells = [f'<td class="num" data-v="{e.rank or ""}">{e.rank or "–"}</td>',
                 f'<td class="model"><a href="{e_(e.code_url)}">{e_(e.name)}</a></td>', f"<td>{e_(e.version)}</td>",
                 f"<td>{e_(e.kind)}</td>"]
        for m in COLUMNS:
            cells.append(f'<td class="num" data-metric="{m}" data-v="{_num((ev["metrics"].get(m) or {}).get("mean"))}">'
                         f"{e_(_cell(ev['metrics'], m))}</td>")
        cells += [f'<td class="num" data-v="{ev.get("num_tasks", "")}">{ev.get("num_tasks", "")}</td>',
                  f'<td class="num" data-v="{ev.get("num_programs", "")}">{ev.get("num_programs", 0):,}</td>',
                  f'<td class="num" data-v="{e.num_parameters}">{e.num_parameters:,}</td>',
                  f'<td class="flag">{e_(_flag_text(e))}</td>']
        css = ' class="contaminated"' if e.flag == "contaminated" else ""
        parts.append(f"<tr{css}>{''.join(cells)}</tr>")
    parts.append("</tbody></table></div>")
    return "\n".join(parts)


def _plot(b: Board) -> str:
    """OPA per entry with its 95% CI, the random floor (0.5) and the estimated oracle, as inline SVG."""
    rows = [(e, (e.evaluation["metrics"].get(RANK_METRIC) or {})) for e in b.entries]
    rows = [(e, m) for e, m in rows if m.get("mean") is not None]
    if not rows:
        return ""
    left, width, bar, gap = 230, 520, 14, 6
    height = 30 + len(rows) * (bar + gap)
    lo, hi = 0.4, 1.0
    x = lambda v: left + (min(max(v, lo), hi) - lo) / (hi - lo) * width  # noqa: E731
    out = [f'<svg class="plot" width="{left + width + 40}" height="{height + 20}" role="img" '
           f'aria-label="OPA with 95% CI, {html.escape(b.title)}">']
    for tick in (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        out.append(f'<line x1="{x(tick):.1f}" y1="10" x2="{x(tick):.1f}" y2="{height}" stroke="#eee"/>'
                   f'<text x="{x(tick):.1f}" y="{height + 14}" text-anchor="middle">{tick:.1f}</text>')
    references = [(0.5, "random", "#999")]
    if b.noise.get("oracle_opa") is not None:
        references.append((b.noise["oracle_opa"], "oracle (est.)", "#2a7"))
    for value, label, color in references:
        out.append(f'<line x1="{x(value):.1f}" y1="10" x2="{x(value):.1f}" y2="{height}" stroke="{color}" '
                   f'stroke-dasharray="4 3"/><text x="{x(value) + 3:.1f}" y="20" fill="{color}">{label}</text>')
    for i, (e, m) in enumerate(rows):
        y = 26 + i * (bar + gap)
        color = "#bbb" if e.flag == "contaminated" else "#3b6fb6"
        out.append(f'<text x="{left - 6}" y="{y + bar - 3}" text-anchor="end">{html.escape(e.name)} '
                   f'{html.escape(e.version)}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{x(m["mean"]) - left:.1f}" height="{bar}" fill="{color}"/>')
        if m.get("ci_low") is not None and m.get("ci_high") is not None:
            out.append(f'<line x1="{x(m["ci_low"]):.1f}" y1="{y + bar / 2}" x2="{x(m["ci_high"]):.1f}" '
                       f'y2="{y + bar / 2}" stroke="#222" stroke-width="1.5"/>')
    out.append("</svg>")
    return "\n".join(out)


def _live_html(live: list[dict[str, Any]]) -> str:
    if not live:
        return ""
    e_ = html.escape
    heads = [_th("model", "text"), _th("version", "text"), _th("speedup over ansor ↑", "num"), _th("95% CI", "text"),
             _th("wins ↑", "num"), _th("budget", "num"), _th("tasks × seeds", "text"), _th("tuned on", "text"),
             _th("trained on", "text")]
    rows = []
    for x in live:
        speedup, ci, wins = _live_cells(x)
        rows.append("<tr>" + "".join([
            f"<td>{e_(x['name'])}</td>", f"<td>{e_(x['version'])}</td>",
            f'<td class="num" data-v="{_num(x.get("speedup_geomean"))}">{speedup}</td>', f"<td>{ci}</td>",
            f'<td class="num" data-v="{_num(x.get("wins"))}">{wins}</td>',
            f'<td class="num" data-v="{x["budget"]}">{x["budget"]}</td>',
            f"<td>{len(x['tasks'])} × {len(x['seeds'])}</td>", f"<td>{e_(x['tuned_on'])}</td>",
            f"<td>{e_(x['trained_on'])}</td>"]) + "</tr>")
    return ("<h2 id=\"live\">Live tuning</h2><p class=\"noise\">Each model as the cost model of MetaSchedule's "
            "evolutionary search on held-out tasks; best latency after the budget, against TVM's XGBModel from "
            "scratch (<code>ansor</code>) with the same seeds. The harness measures; the model only scores.</p>"
            f'<table class="live"><thead><tr>{"".join(heads)}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def page(boards: list[Board], live: list[dict[str, Any]], generated_at: str) -> str:
    body = "\n".join(_board_html(b) for b in boards) + _live_html(live)
    data = json.dumps({"boards": [b.anchor for b in boards], "entries": sum(len(b.entries) for b in boards)})
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
            "script-src 'unsafe-inline'; img-src data:\">"
            f"<title>CWM-Bench leaderboard</title><style>{_CSS}</style></head><body>"
            "<h1>CWM-Bench leaderboard</h1>"
            f"<p class=\"sub\">Learned cost models for tensor programs, ranked by pairwise ordering accuracy (OPA) on "
            f"tasks and programs they did not train on. Generated {html.escape(generated_at)} by "
            "<code>cwm-bench leaderboard render</code>. Click a column to sort. ⚠ contaminated: trained on what it is "
            "scored on (listed, not ranked); ⚠ unchecked: nothing says what it trained on.</p>"
            f"{body}<script type=\"application/json\" id=\"board-data\">{data}</script><script>{_JS}</script>"
            "</body></html>\n")
