"""What `--workloads` names, as tasks to tune: a suite spec, a dataset folder, or a MetaSchedule
database folder (repeatable; duplicates merged).

    mini                     a suite (`cwm-bench workloads list`), `suite:family` or `suite:name,name`
    release/cpu-v0           every task of a dataset folder (its workloads table)
    release/cpu-v0:by_network   the test-side tasks of one of its splits (held out from training)
    release/cpu-v0:by_network:11de1e9d,softmax   of those, the ones with these ids (or id prefixes) or names
    release/cpu-v0::11de1e9d   chosen tasks of the whole dataset
    tuning_logs/             a MetaSchedule database (database_workload.json), as ms.tune_tir writes it
"""

from __future__ import annotations

import os

from cwm_bench.workload.workload import ArgSpec, NetworkUse, Workload


class WorkloadSpecError(ValueError):
    """A --workloads entry that names no tasks (one line)."""


def resolve_workloads(specs: list[str], target_kind: str = "llvm") -> list[Workload]:
    """The tasks of every spec, in order, each task once."""
    from cwm_bench.workload.suites import UnknownSuiteError, merge_workloads, select_workloads

    found: list[Workload] = []
    for spec in specs:
        folder, _, rest = spec.partition(":") if not os.path.isdir(spec) else (spec, "", "")
        if os.path.isdir(folder):
            split, _, wanted = rest.partition(":")
            tasks = _from_folder(folder, split)
            if wanted:
                keys = [k for k in wanted.split(",") if k]
                tasks = [w for w in tasks if w.task_name in keys or any(w.workload_id.startswith(k) for k in keys)]
                if not tasks:
                    raise WorkloadSpecError(f"--workloads {spec}: no task of {folder} matches {wanted!r}")
            found += tasks
            continue
        try:
            found += select_workloads(spec, target_kind)
        except (UnknownSuiteError, KeyError, ValueError) as exc:
            raise WorkloadSpecError(f"--workloads {spec}: not a folder, and {exc}") from None
    if not found:
        raise WorkloadSpecError(f"--workloads {' '.join(specs)}: no tasks")
    return merge_workloads(found)


def workload_from_row(row: dict, mod) -> Workload:
    """A workloads-table row (and its module) as a `Workload`."""
    args = tuple(ArgSpec(n, tuple(s), d) for n, s, d in zip(row["arg_names"], row["arg_shapes"], row["arg_dtypes"],
                                                             strict=True))
    networks = tuple(NetworkUse(u["network"], u["weight"]) for u in row["networks"] or [])
    return Workload(row["workload_id"], row["task_name"], row["family"], row["source"], mod, networks, row["flops"],
                    args)


def _from_folder(folder: str, split: str) -> list[Workload]:
    from cwm_bench.import_ms import WORKLOAD_FILE

    if os.path.isfile(os.path.join(folder, WORKLOAD_FILE)):
        if split:
            raise WorkloadSpecError(f"--workloads {folder}:{split}: a MetaSchedule database has no splits")
        return _from_metaschedule(folder)
    return _from_dataset(folder, split)


def _from_dataset(folder: str, split: str) -> list[Workload]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import tvm

    from cwm_bench.rows.reader import NotADatasetError, read_table
    from cwm_bench.splits import SPLIT_COLUMNS

    try:
        workloads = read_table(folder, "workloads")
        if split:
            if split not in SPLIT_COLUMNS:
                raise WorkloadSpecError(f"--workloads {folder}:{split}: unknown split; "
                                        f"known: {', '.join(SPLIT_COLUMNS)}")
            column = SPLIT_COLUMNS[split]
            records = read_table(folder, "records", ["workload_id", column])
            test = set(records.filter(pc.equal(records[column], "test")).column("workload_id").to_pylist())
            chosen = pa.array(sorted(test), pa.string())
            workloads = workloads.filter(pc.is_in(workloads["workload_id"], value_set=chosen))
    except NotADatasetError as exc:
        raise WorkloadSpecError(f"--workloads {folder}: {exc}") from None
    except KeyError as exc:
        raise WorkloadSpecError(f"--workloads {folder}:{split}: the dataset has no column {exc} "
                                "(a collection folder has no splits; use its release)") from None
    return [workload_from_row(row, tvm.ir.load_json(row["mod_json"])) for row in workloads.to_pylist()]


def _from_metaschedule(folder: str) -> list[Workload]:
    from cwm_bench.import_ms import ImportError_, _family, _parse_workloads, _task_name
    from cwm_bench.tvm_env import structural_hash_hex

    try:
        mods = _parse_workloads(folder)
    except ImportError_ as exc:
        raise WorkloadSpecError(f"--workloads {folder}: {exc}") from None
    out = []
    for mod in mods:
        w = Workload.from_mod(mod, "", "", "imported")
        name = _task_name(mod, structural_hash_hex(w.mod))
        out.append(Workload.from_mod(mod, name, _family(w.mod, name), "imported"))
    return out
