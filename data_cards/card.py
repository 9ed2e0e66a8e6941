"""The data card (README.md) of a release folder: statistics read from the data, then a pure renderer.

`dataset_stats` only reads; `render_card` only formats (same stats -> same text), so every number in
a card can be traced to the data, and `cwm-bench card DIR` regenerates it at any time.
"""

from __future__ import annotations

import os

import yaml

from cwm_bench.data_cards.stats import dataset_stats, hf_features
from cwm_bench.splits import SPLIT_COLUMNS

__all__ = ["dataset_stats", "hf_features", "human_bytes", "render_card", "write_card"]


def write_card(release_dir: str, name: str | None = None) -> dict:
    """(Re)write DIR/README.md from the data; returns the stats it was rendered from."""
    stats = dataset_stats(release_dir)
    text = render_card(stats, name or stats["release"].get("name") or os.path.basename(release_dir.rstrip("/")))
    path = os.path.join(release_dir, "README.md")
    with open(path + ".partial", "w") as handle:
        handle.write(text)
    os.replace(path + ".partial", path)
    return stats

_ORIGINS = {"random": "a random design space with every decision re-sampled",
            "evolutionary": "MetaSchedule's EvolutionarySearch, guided by an XGBoost model of the task's records",
            "imported": "imported from MetaSchedule tuning databases"}
_MEANINGS = {
    "record_id": "sha1(workload_id, program_hash)[:16]; equal for the same program on every hardware",
    "workload_id": "structural hash of the task's IRModule (→ workloads)", "target": "TVM target JSON",
    "hw_id": "hardware id", "hw_kind": "cpu or gpu", "hw_name": "CPU model or GPU name",
    "hw_arch": "LLVM mcpu (CPU) or CUDA arch such as sm_90 (GPU)",
    "hw_num_cores": "cores used (CPU) or streaming multiprocessors (GPU)", "hw_isa": "ISA flags (CPU)",
    "hw_descriptor": "full hardware JSON",
    "program_hash": "structural hash of the scheduled program",
    "trace_json": "MetaSchedule trace; replay with `Trace.apply_json_to_schedule`",
    "actions": "structured action sequence (kind, SSA inputs/outputs, attrs JSON, sampled decision)",
    "features": "MetaSchedule/Ansor per-store features, one row per buffer store",
    "latencies_s": "every timing, seconds", "latency_s": "median of latencies_s; null unless status is ok",
    "status": "ok, build_error, run_error, timeout, wrong_result", "error": "error text of non-ok rows",
    "checked": "outputs compared with the unscheduled program", "origin": "random, evolutionary or imported",
    "design_space": "design-space index of random candidates, -1 otherwise", "seed": "sampling seed",
    "protocol": "measurement protocol JSON", "measured_at": "UTC time of measurement",
    "measured_by": "local, rpc:KEY@HOST:PORT of the RPC server that timed it, or cuda_measure (GPU)",
    "collector_version": "cwm-bench version", "tvm_version": "TVM version",
    "task_name": "MetaSchedule task or operator name", "family": "operator family",
    "source": "operator, network or imported", "flops": "TIR FLOP estimate",
    "networks": "networks containing the task, with MetaSchedule's task weight",
    "arg_names": "PrimFunc buffer arguments", "arg_shapes": "their shapes", "arg_dtypes": "their dtypes",
    "mod_json": "`tvm.ir.save_json` of the IRModule", "tvmscript": "the IRModule as TVMScript",
    **{col: f"`train`/`test` for the {s} split" for s, col in SPLIT_COLUMNS.items()},
}
_CPU_COLLECTION = [
    "Programs equal to one already collected are dropped. Every candidate is compiled in an isolated worker "
    "and timed alone in an isolated process (builds never overlap timings); crashes and hangs become "
    "error rows. A sample of candidates is checked against the unscheduled program."]
_GPU_COLLECTION = [
    "Programs equal to one already collected are dropped. Candidates are compiled on a machine without a GPU "
    "(host code by LLVM, kernels to cubins by nvcc with TVM's flags; a kernel nvcc rejects is a build error) "
    "and timed on the GPU by `tools/cuda_measure.py` with TVM's runtime only, in a worker process that a hang "
    "or a CUDA error kills and restarts (that kernel becomes an error row). Where the workload under a plain GPU "
    "schedule (dlight's fallback) builds, every output is compared with its output on the same random inputs "
    "(`checked`)."]
_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]


def render_card(stats: dict, name: str) -> str:
    """README.md for the Hub: YAML front matter (configs, dataset_info) and the card's markdown."""
    front = yaml.safe_dump(_front_matter(stats, name), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{front}---\n\n" + "\n".join(_body(stats, name)) + "\n"


def _front_matter(stats: dict, name: str) -> dict:
    configs = stats["configs"]
    return {
        "license": "apache-2.0",
        "pretty_name": name.split("/")[-1],
        "task_categories": ["tabular-regression"],
        "tags": ["tvm", "metaschedule", "tensor-programs", "cost-model", "autotuning", "compilers"],
        "size_categories": [next((c for limit, c in _SIZES if stats["records"] < limit), "n>100M")],
        "configs": [{"config_name": c, "data_files": [{"split": v["split"], "path": v["data_files"]}],
                     **({"default": True} if c == "records" else {})} for c, v in configs.items()],
        # `datasets` reads a split only with name, num_examples and num_bytes (the Arrow size in memory).
        "dataset_info": [{"config_name": c, "features": v["features"],
                          "splits": [{"name": v["split"], "num_bytes": v["num_bytes"],
                                      "num_examples": v["num_examples"]}],
                          "download_size": v["download_size"], "dataset_size": v["num_bytes"]}
                         for c, v in configs.items()],
    }


def _is_gpu(hardware: dict) -> bool:
    return hardware.get("kind") == "gpu"


def _hw_label(h: dict) -> str:
    return f"{h['name']} ({h['arch']}, {h['cores']} {'SMs' if _is_gpu(h) else 'cores'})"


def _hw_rows(h: dict) -> list[list]:
    if _is_gpu(h):
        head = [["GPU", h["name"]], ["CUDA arch", h["arch"]], ["streaming multiprocessors", h["cores"]]]
    else:
        head = [["CPU", h["name"]], ["LLVM mcpu", h["arch"]], ["cores", h["cores"]], ["ISA", " ".join(h["isa"]) or "-"]]
    return head + [[k, v] for k, v in sorted(h["details"].items()) if v != ""]


def _body(s: dict, name: str) -> list[str]:
    gpu = bool(s["hardware"]) and all(_is_gpu(h) for h in s["hardware"])
    hw = "; ".join(_hw_label(h) for h in s["hardware"])
    lines = [
        f"# {name.split('/')[-1]}", "",
        f"**{s['records']:,} measured tensor-program schedules** ({s['ok_records']:,} ok) of **{s['tasks']:,} "
        f"tasks**, each with its MetaSchedule trace, structured action sequence, per-store features and every "
        f"latency timing. Measured on {hw} with TVM {', '.join(s['tvm_versions'])} "
        f"(cwm-bench {', '.join(s['collector_versions'])}), {_when(s['measured_from'])} to {_when(s['measured_to'])}. "
        "A CWM-Bench dataset for learned cost models.", "",
        "## Load", "", "```python", "import datasets", "",
        f'records = datasets.load_dataset("{name}", "records", split="train")',
        f'workloads = datasets.load_dataset("{name}", "workloads", split="train")',
        'train = records.filter(lambda r: r["split_by_network"] == "train")',
        "# a local copy of this folder:",
        'records = datasets.load_dataset("path/to/folder", "records", split="train")', "```", "",
        "`checksums.sha256` lists every data file (`sha256sum -c checksums.sha256`).", "",
        *_table(["config", "rows", "files", "size"],
                [[f"`{c}`", f"{v['num_examples']:,}", len(v["files"]), human_bytes(v["download_size"])]
                 for c, v in s["configs"].items()]), "",
        "## How it was collected", "",
        "Each task's candidates come from MetaSchedule's design spaces (`post-order-apply`, default "
        f"{'CUDA' if gpu else 'CPU'} rules):", "",
        *[f"- `{o}` ({n:,} records): {_ORIGINS.get(o, o)}" for o, n in s["by_origin"].items()], "",
        *(_GPU_COLLECTION if gpu else _CPU_COLLECTION), "",
    ]
    for p in s["protocols"]:
        lines += [f"Measurement protocol ({p['records']:,} records):", "",
                  *_table(["setting", "value"], [[f"`{k}`", f"`{v}`"] for k, v in p["protocol"].items()]), ""]
    for h in s["hardware"]:
        lines += [f"Hardware `{h['hw_id']}` ({h['records']:,} records):", "",
                  *_table(["property", "value"], _hw_rows(h)), ""]
    lines += [f"TVM target ({n:,} records): `{t}`" for t, n in s["targets"].items()] + ["", "## Schema", ""]
    for c, v in s["configs"].items():
        lines += [f"**{c}**", "", *_table(["column", "type", "meaning"], [
            [f"`{col}`", f"`{t}`", _MEANINGS.get(col, "")] for col, t in zip(v["column_names"], v["column_types"],
                                                                            strict=True)]), ""]
    lines += _splits(s) + _noise_section(s["noise"]) + _counts_section(s) + _limitations(s) + [
        "## Citation", "", "```bibtex", "@misc{cwm_bench,", "  title  = {CWM-Bench: a dataset and benchmark for "
        "learned tensor-program cost models},", "  author = {CWM-Bench contributors},",
        # the year of the last measurement: read from the data, so the same data gives the same card
        *([f"  year   = {{{s['measured_to'][:4]}}},"] if s["measured_to"] else []),
        f"  url    = {{https://huggingface.co/datasets/{name}}}", "}", "```"]
    return lines


def _splits(s: dict) -> list[str]:
    seed = s["release"].get("seed", "?")
    rows = [[f"`{SPLIT_COLUMNS[k]}`", s["split_descriptions"].get(k, ""), f"{v['train']['records']:,}",
             f"{v['test']['records']:,}", v["train"]["tasks"], v["test"]["tasks"]] for k, v in s["splits"].items()]
    return ["## Splits", "", f"Splits are columns of `records` (seed {seed}), so no row is stored twice: the Hub "
            "shows one `train` split; filter on a column to get a scheme's train or test side.", "",
            *_table(["column", "definition", "train records", "test records", "train tasks", "test tasks"], rows), ""]


_NOISE_MEANINGS = {
    "two_run_agreement": "two-run agreement, mean over tasks",
    "two_run_agreement_pooled": "two-run agreement, pooled over all compared pairs",
    "oracle_opa": "estimated oracle accuracy (OPA against the labels), mean over tasks",
    "oracle_opa_pooled": "estimated oracle accuracy, tasks weighted by compared pairs",
    "tasks": "tasks with re-measured programs", "pairs": "program pairs compared (within a task, no ties)",
    "agreeing_pairs": "pairs both runs order alike", "programs": "programs ok in both runs",
    "median_cv_original": "median coefficient of variation of a program's timings, original run (the labels)",
    "median_cv_remeasured": "the same, re-measurement",
    "median_rel_change": "median relative change of a program's latency between the runs",
    "median_ratio": "median latency ratio re-measured / original",
    "hw_ids_original": "hardware of the original run", "hw_ids_remeasured": "hardware of the re-measurement",
}


def _noise_section(noise: dict | None) -> list[str]:
    lines = ["## Noise: two-run agreement and estimated oracle accuracy", ""]
    if noise is None:
        return lines + ["Not measured yet: this release holds no re-measurements.", ""]
    lines.append(f"The `noise` config holds {noise['rows']:,} re-measurements of released records: the same programs "
                 "timed again on the same hardware, in a separate process, later.")
    reference = noise.get("reference")
    if not reference or not reference.get("pairs"):
        return lines + ["", "No re-measured pair of programs to compare yet.", ""]
    lines += [
        "",
        "- **Two-run agreement**: the share of a task's program pairs that both runs order the same way (pairs "
        "tied in either run are skipped). It is not an upper bound on a model's accuracy: a model that knew the "
        "true latencies would agree with one noisy run more often than two noisy runs agree with each other.",
        "- **Estimated oracle accuracy**: the pairwise ordering accuracy (OPA), against this release's labels "
        "(the original run), of a model that knew the true latencies. It is estimated per task from the two-run "
        "agreement by the correction for attenuation, which assumes independent, equally large, roughly "
        "Gaussian errors in both runs: too high if the labels are the noisier run, too low if they are the "
        "quieter one. A model can exceed it only through estimation error. Method and measured biases: "
        "`cwm_bench/noise.py`.",
    ]
    cv_a, cv_b = reference.get("median_cv_original"), reference.get("median_cv_remeasured")
    if cv_a and cv_b and max(cv_a / cv_b, cv_b / cv_a) >= 1.5:
        lines.append(f"- Here the {'original run' if cv_a > cv_b else 're-measurement'}'s timings spread "
                     f"{max(cv_a / cv_b, cv_b / cv_a):.1f}x more (median CV {cv_a:.1%} vs {cv_b:.1%}): if its "
                     f"errors are larger too, the estimate is too {'high' if cv_a > cv_b else 'low'}.")
    rows = [[f"`{k}`", _figure(v), _NOISE_MEANINGS.get(k, "")] for k, v in reference.items() if not isinstance(v, dict)]
    nested = [f"`{k}` ({len(v)} entries)" for k, v in reference.items() if isinstance(v, dict)]
    lines += ["", *_table(["figure", "value", "meaning"], rows), ""]
    return lines + ([f"Per-group figures in the stats: {', '.join(nested)}.", ""] if nested else [])


def _figure(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return _num(v)
    return ", ".join(map(str, v)) if isinstance(v, list) else str(v)


def _counts_section(s: dict) -> list[str]:
    total = max(s["records"], 1)
    opt, lat, ratio = s["ok_per_task"], s["latency_s"], s["task_best_to_worst"]
    lines = ["## Counts", "", *_table(["status", "records", "share"], [
        [f"`{k}`", f"{n:,}", f"{n / total:.1%}"] for k, n in s["by_status"].items()]), "",
        *_table(["origin", "records", "non-ok share"], [
            [f"`{k}`", f"{n:,}", f"{s['error_rate'][k]:.1%}"] for k, n in s["by_origin"].items()]), "",
        *_table(["family", "tasks", "records", "ok records"], [
            [f, v["tasks"], f"{v['records']:,}", f"{v['ok']:,}"] for f, v in s["families"].items()]), ""]
    sources = ", ".join(f"{n} {k}" for k, n in s["tasks_by_source"].items())
    lines += [f"Tasks by source: {sources}.", ""]
    if s["tasks_per_network"]:
        lines += _table(["network", "tasks"], [[k, n] for k, n in s["tasks_per_network"].items()]) + [""]
    if opt:
        lines.append(f"- ok records per task: min {opt['min']}, median {_num(opt['median'])}, max {opt['max']} "
                     f"({opt['tasks_without_ok']} tasks without an ok record; {opt['tasks_with_200_ok']} tasks with at "
                     f"least 200)")
    if lat:
        lines.append(f"- ok latency: {_seconds(lat['min'])} to {_seconds(lat['max'])} "
                     f"(median {_seconds(lat['median'])})")
    if ratio:
        lines.append(f"- per task, slowest / fastest ok schedule: median {ratio['median']:.3g}x "
                     f"(min {ratio['min']:.3g}x, max {ratio['max']:.3g}x)")
    excluded = s["release"].get("excluded_tasks") or []
    if excluded:
        lines.append(f"- left out of this release: {len(excluded)} task(s) with fewer than "
                     f"{s['release']['min_ok_per_task']} ok records (their design spaces hold fewer distinct "
                     "programs): " + ", ".join(f"`{t['task_name']}` ({t['ok']})" for t in excluded))
    return lines + [f"- non-ok records: {s['error_rate']['all']:.1%}",
                    f"- data files: {human_bytes(s['total_data_bytes'])}", ""]


def _limitations(s: dict) -> list[str]:
    n = len(s["hardware"])
    if n and all(_is_gpu(h) for h in s["hardware"]):
        specific = [f"- One GPU model ({n} hardware id{'s' if n > 1 else ''}): latencies do not transfer to "
                    "other GPUs.",
                    "- Candidates are random samples of the design spaces only: no cost-model-guided (evolutionary) "
                    "GPU candidates yet.",
                    "- All workloads are float32: tensor-core (fp16/bf16) schedules are not covered."]
    else:
        cores = ", ".join(str(h["cores"]) for h in s["hardware"])
        specific = [f"- One CPU model ({n} hardware id): latencies do not transfer to other CPUs.",
                    f"- Measured on a shared cloud machine ({cores} cores): the protocol interleaves rounds and keeps "
                    "every timing against noise, but other tenants still move timings (see the noise section)."]
    return ["## Known limitations", "",
            "- BatchNorm is not folded into convolutions by TVM's Relax tuning pipeline: network conv tasks carry "
            "a per-channel epilogue, unlike TenSet's Relay-era tasks.", *specific,
            "- `within_task` draws each record's side by hash, so a task with few records may have no test record.",
            "- Traces replay with the TVM version above; other versions may reject or change them.", ""]


def _table(header: list[str], rows: list[list]) -> list[str]:
    cells = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in rows]
    return [f"| {' | '.join(header)} |", "|" + "---|" * len(header), *[f"| {' | '.join(r)} |" for r in cells]]


def _when(iso: str | None) -> str:
    return f"{iso[:16].replace('T', ' ')} UTC" if iso else "?"


def _num(x: float) -> str:
    return f"{x:.4g}"


def _seconds(x: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x / 1e-9:.3g} ns"


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (SI units, as the Hub shows sizes)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            break
        n /= 1000
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
