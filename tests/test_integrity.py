"""Bad input never becomes data: every refusal is one line naming the file and the problem, exits
non-zero, and leaves its inputs byte-identical (nothing written or replaced).

`pytest -s tests/test_integrity.py` prints the table of cases: command, exit code, message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cwm_bench.cli import main
from cwm_bench.release import build_release, write_checksums
from cwm_bench.rows.reader import DatasetIntegrityError, read_table, verify_folder
from cwm_bench.rows.store import DatasetBusyError, DatasetStore

NAME = "org/tiny-integrity"
MINI = "mini:matmul_64x64x64"
BUSY = "another cwm-bench process is writing to this folder"

pytestmark = pytest.mark.usefixtures("hub_offline")


# -- inputs ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def release(tmp_path_factory, tiny_dataset) -> str:
    out = str(tmp_path_factory.mktemp("integrity") / "release")
    build_release(tiny_dataset, out, NAME)
    return out


@pytest.fixture(scope="module")
def databases(tmp_path_factory) -> list[str]:
    """5 real MetaSchedule JSON databases (written by JSONDatabase), 2 matmul schedules each."""
    from cwm_bench.tvm_env import load_tensor_intrinsics

    load_tensor_intrinsics("llvm")
    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.testing import te_workload

    from cwm_bench.candidates.generate import CandidateGenerator
    from cwm_bench.workload.workload import Workload

    func = te.create_prim_func(te_workload.matmul(32, 32, 32))
    target = tvm.target.Target({"kind": "llvm", "num-cores": 2})
    candidates = CandidateGenerator(Workload.from_mod(func, "mm", "matmul", "operator"), target, seed=3).random(10)
    assert len(candidates) == 10
    args = ms.arg_info.ArgInfo.from_prim_func(func)
    paths = []
    for i in range(5):
        path = str(tmp_path_factory.mktemp(f"msdb{i}"))
        database = ms.database.JSONDatabase(work_dir=path)
        workload = database.commit_workload(tvm.IRModule({"main": func}))
        for j, c in enumerate(candidates[2 * i:2 * i + 2]):
            database.commit_tuning_record(ms.database.TuningRecord(c.sch.trace, workload, [1e-4 * (j + 1)], target,
                                                                   args))
        paths.append(path)
    return paths


def _record_shards(folder: Path) -> list[Path]:
    return sorted((folder / "records").glob("*.parquet")) or sorted((folder / "data" / "records").glob("*.parquet"))


def _rewrite(shard: Path, edit: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(edit(pq.read_table(shard)), shard, compression="zstd")


def _reseal(folder: Path) -> None:
    """Record the folder's files as they now are (a deliberate edit, so only the content is wrong)."""
    if (folder / "manifest.json").exists():
        with DatasetStore(str(folder)) as store:
            store.write_manifest()
    else:
        write_checksums(str(folder))


def _drop(column: str) -> Callable[[pa.Table], pa.Table]:
    return lambda t: t.drop_columns([column])


def _null_ok(column: str) -> Callable[[pa.Table], pa.Table]:
    def edit(t: pa.Table) -> pa.Table:
        ok = pc.equal(t["status"], "ok").to_pylist()
        values = [None if is_ok else v for v, is_ok in zip(t[column].to_pylist(), ok, strict=True)]
        return t.set_column(t.schema.get_field_index(column), t.schema.field(column),
                            pa.array(values, t.schema.field(column).type))
    return edit


def _permute(column: str) -> Callable[[pa.Table], pa.Table]:
    def edit(t: pa.Table) -> pa.Table:
        values = t[column].to_pylist()
        order = np.random.default_rng(0).permutation(len(values))
        return t.set_column(t.schema.get_field_index(column), t.schema.field(column),
                            pa.array([values[i] for i in order], t.schema.field(column).type))
    return edit


def _snapshot(*roots: Path) -> dict[str, bytes]:
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if path.is_file():
                out[str(path)] = path.read_bytes()
    return out


def _matches(expected: str, line: str) -> bool:
    """`expected` in `line`; a `*` in it stands for any text."""
    import fnmatch

    return fnmatch.fnmatchcase(line, f"*{expected.replace('[', '[[]')}*")


@dataclass
class Case:
    name: str
    setup: Callable[[Path], tuple[list[str], list[Path], list[Path]]]  # ws -> (args, inputs, never written)
    code: int
    message: str


# -- the cases -------------------------------------------------------------------------------------
def _cases(tiny: str, rel: str, dbs: list[str], busy: Path) -> list[Case]:
    def collection(ws: Path) -> Path:
        shutil.copytree(tiny, ws / "src")
        return ws / "src"

    def release_copy(ws: Path) -> Path:
        shutil.copytree(rel, ws / "rel")
        return ws / "rel"

    def release_of(edit, reseal=True, shard=1):
        def setup(ws):
            src = collection(ws)
            _rewrite(_record_shards(src)[shard], edit)
            if reseal:
                _reseal(src)
            return ["release", str(src), "--out", str(ws / "out"), "--name", NAME], [src], [ws / "out"]
        return setup

    def collection_then(change, command="release"):
        def setup(ws):
            src = collection(ws)
            change(src)
            if command == "validate":
                return ["validate", str(src), "--replay", "0"], [src], []
            return ["release", str(src), "--out", str(ws / "out"), "--name", NAME], [src], [ws / "out"]
        return setup

    def on_release(change, command="train"):
        def setup(ws):
            folder = release_copy(ws)
            change(folder)
            if command == "train":
                args = ["train", "--model", "ansor-xgb", "--data", str(folder), "--split", "within_task",
                        "--out", str(ws / "ckpt")]
                return args, [folder], [ws / "ckpt"]
            if command == "evaluate":
                args = ["evaluate", "--model", "random", "--data", str(folder), "--split", "within_task",
                        "--json", str(ws / "result.json")]
                return args, [folder], [ws / "result.json"]
            if command == "publish":
                return ["publish", str(folder), "--repo-id", NAME, "--dry-run"], [folder], []
            return ["validate", str(folder), "--replay", "0"], [folder], []
        return setup

    def edit_manifest_checksum(src: Path) -> None:
        manifest = json.loads((src / "manifest.json").read_text())
        entry = manifest["shards"]["records"][1]
        entry["sha256"] = ("0" if entry["sha256"][0] != "0" else "1") + entry["sha256"][1:]
        (src / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))

    def edit_release_checksum(folder: Path) -> None:
        lines = (folder / "checksums.sha256").read_text().splitlines()
        lines = [("0" if ln[0] != "0" else "1") + ln[1:] if "data/records/" in ln else ln for ln in lines]
        (folder / "checksums.sha256").write_text("".join(ln + "\n" for ln in lines))

    def truncate(path: Path) -> None:
        path.write_bytes(path.read_bytes()[:200])

    def garbage(path: Path) -> None:
        path.write_bytes(np.random.default_rng(1).bytes(path.stat().st_size))

    def extra_copy(path: Path) -> None:
        shutil.copy(path, path.with_name("train-extra.parquet" if "data" in str(path) else "part-zzzz-extra.parquet"))

    def collect(*extra: str) -> Callable[[Path], tuple[list[str], list[Path], list[Path]]]:
        return lambda ws: (["collect", "--workloads", MINI, "--per-task", "6", "--no-progress", "--out",
                            str(ws / "new"), *extra], [], [ws / "new"])

    def remeasure(*extra: str):
        def setup(ws):
            src = collection(ws)
            return ["remeasure", str(src), "--out", str(ws / "new"), "--no-progress", *extra], [src], [ws / "new"]
        return setup

    def busy_case(command: str):
        def setup(ws):
            if command == "collect":
                args = ["collect", "--workloads", MINI, "--per-task", "6", "--no-progress", "--out", str(busy)]
                return args, [busy], []
            if command == "import":
                return ["import-metaschedule", dbs[0], "--out", str(busy)], [busy, Path(dbs[0])], []
            if command == "rebuild":
                return ["validate", str(busy), "--rebuild-manifest", "--replay", "0"], [busy], []
            if command == "compact":
                return ["compact", str(busy)], [busy], []
            src = collection(ws)
            return ["remeasure", str(src), "--out", str(busy), "--no-progress"], [src, busy], []
        return setup

    shard_re = "records/part-"
    return [
        # Corrupt collections never become releases.
        Case("features dropped from 1 shard", release_of(_drop("features")), 1,
             f"{shard_re}*.parquet: missing column(s) ['features']"),
        Case("status dropped from 1 shard", release_of(_drop("status")), 1, "missing column(s) ['status']"),
        Case("features dropped, validate", lambda ws: (lambda s: (["validate", str(s), "--replay", "0"], [s], []))(
            release_of(_drop("features"))(ws)[1][0]), 1, "missing column(s) ['features']"),
        Case("features dropped, manifest not updated", release_of(_drop("features"), reseal=False), 1,
             "bytes, manifest.json records"),
        Case("checksum edited in manifest.json", collection_then(edit_manifest_checksum), 1,
             "checksum differs from manifest.json"),
        Case("truncated shard", collection_then(lambda s: truncate(_record_shards(s)[1])), 1,
             "bytes, manifest.json records"),
        Case("garbage shard, manifest rebuilt", lambda ws: (
            garbage(_record_shards(collection(ws))[1]),
            (["validate", str(ws / "src"), "--rebuild-manifest"], [ws / "src"], []))[1], 1,
             "not a readable Parquet file"),
        Case("null labels (latency_s) of ok rows", release_of(_null_ok("latency_s")), 1,
             "status ok but latency_s is None"),
        Case("null features of ok rows", release_of(_null_ok("features")), 1, "status ok but no features"),
        Case("unlisted shard", collection_then(lambda s: extra_copy(_record_shards(s)[0])), 1,
             "not listed in manifest.json"),
        Case("manifest.json deleted", collection_then(lambda s: (s / "manifest.json").unlink()), 1,
             "neither a collection folder"),
        # Releases: checksums are checked, not just recorded.
        Case("checksum edited in checksums.sha256", on_release(edit_release_checksum), 1,
             "sha256 does not match checksums.sha256"),
        Case("checksums.sha256 deleted", on_release(lambda f: (f / "checksums.sha256").unlink()), 1,
             "checksums.sha256: missing"),
        Case("checksums.sha256 deleted", on_release(lambda f: (f / "checksums.sha256").unlink(), "evaluate"), 1,
             "checksums.sha256: missing"),
        Case("latency_s permuted in a release", on_release(lambda f: _rewrite(_record_shards(f)[0],
                                                                              _permute("latency_s")), "evaluate"), 1,
             "sha256 does not match checksums.sha256"),
        Case("unlisted shard in a release", on_release(lambda f: extra_copy(_record_shards(f)[0]), "evaluate"), 1,
             "not listed in checksums.sha256"),
        Case("truncated shard in a release", on_release(lambda f: truncate(_record_shards(f)[0])), 1,
             "sha256 does not match checksums.sha256"),
        Case("garbage shard, checksums rewritten", on_release(lambda f: (garbage(_record_shards(f)[0]),
                                                                          _reseal(f)), "evaluate"), 1,
             "not a readable Parquet file"),
        Case("features dropped, checksums rewritten", on_release(lambda f: (_rewrite(_record_shards(f)[0],
                                                                                     _drop("features")), _reseal(f))),
             1, "missing column(s) ['features']"),
        Case("null features of ok rows", on_release(lambda f: (_rewrite(_record_shards(f)[0], _null_ok("features")),
                                                               _reseal(f)), "publish"), 1,
             "status ok but no features"),
        Case("null features of ok rows", on_release(lambda f: (_rewrite(_record_shards(f)[0], _null_ok("features")),
                                                               _reseal(f)), "validate"), 1,
             "status ok but no features"),
        Case("release without its card", on_release(lambda f: (f / "README.md").unlink(), "validate"), 1,
             "README.md: missing"),
        # Options are range-checked at the boundary (usage errors: exit 2, nothing created).
        Case("--rounds 0", collect("--rounds", "0"), 2, "'--rounds': 0 is not in the range x>=1"),
        Case("--repeats 0", collect("--repeats", "0"), 2, "'--repeats': 0 is not in the range x>=1"),
        Case("--per-task 0", collect("--per-task", "0"), 2, "'--per-task': 0 is not in the range x>=1"),
        Case("--batch-size 0", collect("--batch-size", "0"), 2, "'--batch-size': 0 is not in the range x>=1"),
        Case("--evolutionary-fraction 2", collect("--evolutionary-fraction", "2"), 2,
             "'--evolutionary-fraction': 2.0 is not in the range 0.0<=x<=1.0"),
        Case("--check-fraction 1.5", collect("--check-fraction", "1.5"), 2, "'--check-fraction': 1.5 is not in"),
        Case("--timeout 0", collect("--timeout", "0"), 2, "'--timeout': 0.0 is not in the range x>0.0"),
        Case("--max-attempts 0", collect("--max-attempts", "0"), 2, "'--max-attempts': 0 is not in the range x>=1"),
        Case("remeasure --rounds 0", remeasure("--rounds", "0"), 2, "'--rounds': 0 is not in the range x>=1"),
        Case("remeasure --check-fraction 2", remeasure("--check-fraction", "2"), 2, "'--check-fraction': 2.0 is not"),
        Case("release --min-ok-per-task -1", lambda ws: (
            ["release", str(collection(ws)), "--out", str(ws / "out"), "--name", NAME, "--min-ok-per-task", "-1"],
            [ws / "src"], [ws / "out"]), 2, "'--min-ok-per-task': -1 is not in the range x>=0"),
        Case("validate --replay -1", lambda ws: (["validate", str(collection(ws)), "--replay", "-1"], [ws / "src"],
                                                 []), 2, "'--replay': -1 is not in the range x>=0"),
        # A folder another process is writing to (a real second process holds the lock).
        Case("collect on a busy --out", busy_case("collect"), 1, BUSY),
        Case("import-metaschedule on a busy --out", busy_case("import"), 1, BUSY),
        Case("validate --rebuild-manifest on a busy folder", busy_case("rebuild"), 1, BUSY),
        Case("compact on a busy folder", busy_case("compact"), 1, BUSY),
        Case("remeasure on a busy --out", busy_case("remeasure"), 1, BUSY),
    ]


@pytest.fixture
def busy_folder(tmp_path, tiny_dataset):
    """A collection whose lock a second, real cwm-bench process holds (a DatasetStore open for writing)."""
    folder = tmp_path / "busy"
    shutil.copytree(tiny_dataset, folder)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom cwm_bench.rows.store import DatasetStore\n"
                               "store = DatasetStore(sys.argv[1])\nprint('locked', flush=True)\nsys.stdin.read()\n",
         str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield folder
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_every_refusal_is_one_line_and_writes_nothing(tmp_path, tiny_dataset, release, databases, busy_folder):
    rows, failures = [], []
    for number, case in enumerate(_cases(tiny_dataset, release, databases, busy_folder)):
        ws = tmp_path / f"case{number:02d}"
        ws.mkdir()
        args, inputs, absent = case.setup(ws)
        before = _snapshot(*inputs)
        result = CliRunner().invoke(main, args)
        lines = result.output.splitlines()
        errors = [line for line in lines if line.startswith("Error:")]
        if not errors:  # `validate` reports one `error:` line per problem
            errors = [line for line in lines if line.startswith("error:") and _matches(case.message, line)][:1]
        message = errors[-1] if errors else (lines or [""])[-1]
        shown = message.replace(f"{ws}/", "").replace(f"{busy_folder.parent}/", "")
        rows.append((" ".join(["cwm-bench", args[0], *[a if not a.startswith("/") else os.path.basename(a)
                                                         for a in args[1:]]]), case.name, result.exit_code, shown))
        problems = []
        if result.exit_code != case.code:
            problems.append(f"exit {result.exit_code}, expected {case.code}")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            problems.append(f"uncaught {type(result.exception).__name__}: {result.exception}")
        if len(errors) != 1 or not _matches(case.message, errors[0]):
            problems.append(f"expected one 'Error:' line with {case.message!r}")
        if "Traceback" in result.output:
            problems.append("traceback in the output")
        if _snapshot(*inputs) != before:
            problems.append("inputs changed")
        problems += [f"{p} was written" for p in absent if p.exists()]
        if problems:
            failures.append(f"{case.name} ({' '.join(args[:1])}): {'; '.join(problems)}\n    output: {result.output}")
    print("\n| command | case | exit | message |\n|---|---|---|---|")
    for command, name, code, message in rows:
        print(f"| `{command}` | {name} | {code} | {message.replace('|', '/')} |")
    assert not failures, "\n".join(failures)


# -- the gate itself -------------------------------------------------------------------------------
def test_size_mode_checks_sizes_without_hashing(tmp_path, tiny_dataset, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    verify_folder(str(copy), "full")

    def no_hashing(path):
        raise AssertionError(f"size mode hashed {path}")

    monkeypatch.setattr("cwm_bench.rows.integrity.file_sha256", no_hashing)
    monkeypatch.setattr("cwm_bench.rows.integrity.FULL_HASH_BYTES", 0)  # `auto` on a "big" folder: sizes only
    assert read_table(str(copy), "records", ["record_id"]).num_rows == 12
    shard = _record_shards(copy)[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DatasetIntegrityError, match=rf"{shard.name}: \d+ bytes, manifest.json records \d+"):
        read_table(str(copy), "records")


def test_a_writer_accepts_its_own_unlisted_shard_readers_do_not(tmp_path, tiny_dataset):
    """A write killed between the shard and the manifest: resume (the writer) goes on, readers refuse."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["shards"]["records"].pop()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetIntegrityError, match="not listed in manifest.json"):
        read_table(str(copy), "records")
    with pytest.raises(DatasetIntegrityError, match="not listed in manifest.json"):
        DatasetStore(str(copy), readonly=True).read("records")
    with DatasetStore(str(copy)) as store:
        assert store.read("records").num_rows == 12
        store.compact("records")  # any write lists every shard again
    assert read_table(str(copy), "records").num_rows == 12


def test_a_changed_shard_is_never_re_recorded_by_a_write(tmp_path, tiny_dataset):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    _rewrite(_record_shards(copy)[0], _permute("latency_s"))
    changed = "checksum differs|manifest.json records"
    with DatasetStore(str(copy)) as store, pytest.raises(DatasetIntegrityError, match=changed):
        store.progress("any")
    with DatasetStore(str(copy)) as store:  # a write does not launder it either
        store.write("workloads", read_table(tiny_dataset, "workloads").to_pylist()[:1])
    with pytest.raises(DatasetIntegrityError, match=changed):
        read_table(str(copy), "records")


def test_writers_refuse_ok_rows_without_latency_or_features(tmp_path, tiny_dataset):
    from cwm_bench.rows.store import InvalidRowsError

    rows = read_table(tiny_dataset, "records").to_pylist()
    ok = next(r for r in rows if r["status"] == "ok")
    for change, message in [({"latency_s": None}, "latency_s is None"), ({"latencies_s": []}, "no timings"),
                            ({"features": None}, "no features"), ({"latency_s": -1.0}, "must be positive")]:
        with DatasetStore(str(tmp_path / "d")) as store, pytest.raises(InvalidRowsError, match=message):
            store.write("records", [{**ok, **change}])
    assert not list((tmp_path / "d" / "records").glob("*.parquet"))


def test_dataset_digest_hashes_the_files(tmp_path, release):
    import hashlib

    from cwm_bench.results import dataset_digest

    recorded = sorted(line.strip() for line in open(os.path.join(release, "checksums.sha256")) if line.strip())
    assert dataset_digest(release) == (hashlib.sha256("\n".join(recorded).encode()).hexdigest(), len(recorded))
    copy = tmp_path / "copy"
    shutil.copytree(release, copy)
    _rewrite(_record_shards(copy)[0], _permute("latency_s"))
    with pytest.raises(DatasetIntegrityError, match="sha256 does not match"):
        dataset_digest(str(copy))


def test_stores_are_context_managers(tmp_path):
    with DatasetStore(str(tmp_path / "d")) as store:
        with pytest.raises(DatasetBusyError):
            DatasetStore(str(tmp_path / "d"))
        assert store.read("records").num_rows == 0
    DatasetStore(str(tmp_path / "d")).close()  # released on exit


# -- many MetaSchedule databases into one folder ---------------------------------------------------
def test_import_of_many_databases_into_one_new_folder(databases, tmp_path):
    from cwm_bench.import_ms import import_databases
    from cwm_bench.validate import validate_dataset

    out = str(tmp_path / "imported")
    report = import_databases(databases, out)
    assert report.count("2 records imported (2 ok") == 5, report
    problems, summary = validate_dataset(out, replay_count=3)
    assert problems == [] and summary.startswith("1 workloads, 10 records"), (problems, summary)
    DatasetStore(out).close()  # the import released its lock
    again = CliRunner().invoke(main, ["import-metaschedule", *databases, "--out", str(tmp_path / "cli")])
    assert again.exit_code == 0, again.output
    assert again.output.count("2 records imported") == 5
    rerun = CliRunner().invoke(main, ["import-metaschedule", *databases, "--out", str(tmp_path / "cli")])
    assert rerun.exit_code == 0 and rerun.output.count("0 records imported") == 5, rerun.output


def test_size_mode_of_a_release_checks_the_cards_sizes(tmp_path, release, monkeypatch):
    from cwm_bench.rows.integrity import inspect_folder

    copy = tmp_path / "copy"
    shutil.copytree(release, copy)
    assert inspect_folder(str(copy), "size") == []
    shard = _record_shards(copy)[0]
    pq.write_table(pq.read_table(shard), shard, compression="none")  # readable, same rows, another size
    monkeypatch.setattr("cwm_bench.rows.integrity.file_sha256", lambda path: pytest.fail(f"hashed {path}"))
    issues = [str(i) for i in inspect_folder(str(copy), "size")]
    assert len(issues) == 1 and "bytes, the card records" in issues[0], issues


def test_a_collections_noise_table_is_checked_once_recorded(tmp_path, tiny_dataset):
    from cwm_bench.noise import write_noise_table

    copy = tmp_path / "copy"
    shutil.copytree(tiny_dataset, copy)
    records = read_table(str(copy), "records")
    write_noise_table(str(copy), records, records)  # not in the manifest: read unchecksummed
    assert read_table(str(copy), "noise").num_rows > 0
    with DatasetStore(str(copy)) as store:
        store.record_table("noise")
    assert "noise" in json.loads((copy / "manifest.json").read_text())["shards"]
    with DatasetStore(str(copy)) as store:  # later writes keep listing it
        store.write("workloads", read_table(tiny_dataset, "workloads").to_pylist()[:1])
    assert "noise" in json.loads((copy / "manifest.json").read_text())["shards"]
    _rewrite(copy / "noise" / "noise.parquet", _permute("latency_s"))
    with pytest.raises(DatasetIntegrityError, match="noise/noise.parquet"):
        read_table(str(copy), "records")
