"""A release built from a real collection: Hub layout, offline `datasets` loading, checksums, the card."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

import cwm_bench.noise as noise_module
from cwm_bench.cli import main
from cwm_bench.data_cards.card import dataset_stats, hf_features, render_card
from cwm_bench.release import ReleaseError, build_release, verify_checksums
from cwm_bench.rows.reader import read_table
from cwm_bench.rows.schema import RECORDS
from cwm_bench.rows.store import DatasetStore
from cwm_bench.splits import SPLIT_COLUMNS

NAME = "cwm-bench/tiny-test"


pytestmark = pytest.mark.usefixtures("hub_offline")


@pytest.fixture(scope="module")
def release(tmp_path_factory, tiny_dataset):
    out = tmp_path_factory.mktemp("release") / "tiny"
    stats = build_release(tiny_dataset, str(out), NAME, seed=0)
    return out, stats


def _front_matter(folder) -> dict:
    return yaml.safe_load((folder / "README.md").read_text().split("---", 2)[1])


def _with_second_hw(src, dst) -> str:
    """A copy of the collection plus the same records again as if measured on another CPU."""
    shutil.copytree(src, dst)
    records = read_table(str(dst), "records")
    other = records.set_column(records.schema.get_field_index("hw_id"), "hw_id",
                               pa.array(["otherhw00001"] * records.num_rows))
    other = other.set_column(other.schema.get_field_index("hw_name"), "hw_name",
                             pa.array(["Other CPU"] * records.num_rows))
    pq.write_table(other, dst / "records" / "part-99999999999999999999-1-0001.parquet")
    with DatasetStore(str(dst)) as store:  # list the new shard: the integrity gate refuses unlisted ones
        store.write_manifest()
    return "otherhw00001"


def test_layout_shards_and_checksums(release, tiny_dataset):
    out, stats = release
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["README.md", "checksums.sha256", "data/records/train-00000-of-00001.parquet",
                     "data/workloads/train-00000-of-00001.parquet"]
    assert verify_checksums(str(out)) == []
    if shutil.which("sha256sum"):  # the file is in the format the standard tool checks
        subprocess.run(["sha256sum", "--quiet", "-c", "checksums.sha256"], cwd=out, check=True)
    records = pq.read_table(out / "data/records/train-00000-of-00001.parquet")
    assert records.column_names == RECORDS.names + list(SPLIT_COLUMNS.values())
    assert records.num_rows == read_table(tiny_dataset, "records").num_rows == stats["records"] == 12
    assert set(pc.unique(records["split_by_network"]).to_pylist()) <= {"train", "test"}
    assert pq.ParquetFile(out / "data/records/train-00000-of-00001.parquet").metadata.row_group(0).column(0) \
        .compression == "ZSTD"
    meta = json.loads(records.schema.metadata[b"cwm_bench.release"])
    assert meta == {"name": NAME, "seed": 0, "hw_id": records["hw_id"][0].as_py(), "min_ok_per_task": 0,
                    "excluded_tasks": []}
    assert stats["folder_bytes"] == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def test_load_dataset_offline(release, tmp_path):
    import datasets

    out, _ = release
    cache = str(tmp_path / "datasets-cache")
    records = datasets.load_dataset(str(out), "records", split="train", cache_dir=cache)
    assert records.num_rows == 12
    assert {"split_within_task", "split_by_network", "split_by_operator"} <= set(records.column_names)
    assert len(records[0]["features"][0]) == 164
    workloads = datasets.load_dataset(str(out), "workloads", split="train", cache_dir=cache)
    assert workloads.num_rows == 2 and workloads[0]["networks"] == []
    # our dataset_info features are what `datasets` itself derives from the Arrow schema
    for table in ("records", "workloads"):
        schema = pq.read_schema(next((out / "data" / table).glob("*.parquet")))
        assert hf_features(schema) == datasets.Features.from_arrow_schema(schema)._to_yaml_list()


def test_card_configs_and_numbers_match_the_data(release):
    out, _ = release
    front = _front_matter(out)
    assert front["license"] == "apache-2.0" and front["size_categories"] == ["n<1K"]
    assert [(c["config_name"], c["data_files"]) for c in front["configs"]] == [
        ("records", [{"split": "train", "path": "data/records/train-*.parquet"}]),
        ("workloads", [{"split": "train", "path": "data/workloads/train-*.parquet"}])]
    info = {i["config_name"]: i for i in front["dataset_info"]}
    assert info["records"]["splits"][0]["num_examples"] == 12 and info["workloads"]["splits"][0]["num_examples"] == 2
    features = {f["name"]: f for f in info["records"]["features"]}
    assert features["features"] == {"name": "features", "list": {"list": "float32", "length": 164}}

    text = (out / "README.md").read_text()
    records = read_table(str(out), "records")
    ok = pc.sum(pc.equal(records["status"], "ok")).as_py()
    assert f"**12 measured tensor-program schedules** ({ok} ok) of **2 tasks**" in text
    for row in pc.value_counts(records["status"]).to_pylist():
        assert f"| `{row['values']}` | {row['counts']} | {row['counts'] / 12:.1%} |" in text
    for scheme, column in SPLIT_COLUMNS.items():
        test = pc.sum(pc.equal(records[column], "test")).as_py()
        assert f"| `{column}` |" in text and f"| {12 - test} | {test} |" in text, scheme
    hw = records["hw_name"][0].as_py()
    assert hw in text and records["tvm_version"][0].as_py() in text
    assert "Not measured yet" in text
    year = pc.max(records["measured_at"]).as_py().year  # the citation's year is read from the data
    assert "author = {CWM-Bench contributors}" in text and f"year   = {{{year}}}" in text


def _assert_no_placeholder(text: str) -> None:
    assert "TODO" not in text, [line for line in text.splitlines() if "TODO" in line]


def test_rendered_cards_hold_no_placeholder(release, tmp_path, tiny_dataset):
    out, _ = release
    _assert_no_placeholder((out / "README.md").read_text())
    stats = dataset_stats(str(out))
    _assert_no_placeholder(render_card(stats, NAME))
    _assert_no_placeholder(render_card({**stats, "measured_to": None}, NAME))  # no year: the line is left out
    shutil.copytree(tiny_dataset, tmp_path / "src")  # and a card with a noise section
    records = read_table(tiny_dataset, "records")
    (tmp_path / "src" / "noise").mkdir()
    pq.write_table(noise_module.noise_table(records, records), tmp_path / "src" / "noise" / "part-0.parquet")
    build_release(str(tmp_path / "src"), str(tmp_path / "out"), NAME)
    _assert_no_placeholder((tmp_path / "out" / "README.md").read_text())


@pytest.mark.parametrize("folder", ["cwm-bench-cpu-v0", "cwm-bench-h200-v0", "cwm-bench-znver4-v0"])
def test_committed_release_cards_hold_no_placeholder_or_ceiling(folder):
    path = os.path.join(os.path.dirname(__file__), "..", "datasets", folder, "README.md")
    if not os.path.exists(path):
        pytest.skip(f"{folder} is not in this checkout")
    text = open(path).read()
    _assert_no_placeholder(text)
    assert "ceiling" not in text.lower() and "| `oracle_opa` |" in text and "| `two_run_agreement` |" in text


def test_render_card_is_pure(release):
    out, _ = release
    stats = dataset_stats(str(out))
    json.dumps(stats)  # plain data: can be stored and diffed
    before = copy.deepcopy(stats)
    first = render_card(stats, NAME)
    assert render_card(stats, NAME) == first and stats == before
    assert (out / "README.md").read_text() == first  # the written card is exactly the rendering
    result = CliRunner().invoke(main, ["card", str(out)])
    assert result.exit_code == 0 and (out / "README.md").read_text() == first


def test_two_hardware_ids_are_refused(tmp_path, tiny_dataset):
    other = _with_second_hw(tiny_dataset, tmp_path / "src")
    out = tmp_path / "out"
    with pytest.raises(ReleaseError, match="2 hardware ids.*choose it with --hw-id"):
        build_release(str(tmp_path / "src"), str(out), NAME)
    result = CliRunner().invoke(main, ["release", str(tmp_path / "src"), "--out", str(out), "--name", NAME])
    assert result.exit_code == 1 and "--hw-id" in result.output and "Other CPU" in result.output
    assert sorted(os.listdir(tmp_path)) == ["src"]  # nothing written, no temp folder left
    with pytest.raises(ReleaseError, match="no records for hw_id nope"):
        build_release(str(tmp_path / "src"), str(out), NAME, hw_id="nope")

    result = CliRunner().invoke(main, ["release", str(tmp_path / "src"), "--out", str(out), "--name", NAME,
                                       "--hw-id", other])
    assert result.exit_code == 0, result.output
    assert "12 records" in result.output and "total size" in result.output
    assert set(read_table(str(out), "records")["hw_id"].to_pylist()) == {other}


def test_noise_table_is_carried_into_the_release(tmp_path, tiny_dataset):
    shutil.copytree(tiny_dataset, tmp_path / "src")
    records = read_table(tiny_dataset, "records", columns=["record_id", "workload_id", "hw_id", "latency_s"])
    (tmp_path / "src" / "noise").mkdir()
    noise = pa.table({"record_id": records["record_id"], "workload_id": records["workload_id"],
                      "hw_id": records["hw_id"], "latency_s": records["latency_s"],
                      "latencies_s": [[1e-5, 1.1e-5]] * records.num_rows})
    pq.write_table(noise, tmp_path / "src" / "noise" / "part-0.parquet")
    build_release(str(tmp_path / "src"), str(tmp_path / "out"), NAME)
    assert (tmp_path / "out" / "data/noise/train-00000-of-00001.parquet").exists()
    assert [c["config_name"] for c in _front_matter(tmp_path / "out")["configs"]] == ["records", "workloads", "noise"]
    assert "12 re-measurements" in (tmp_path / "out" / "README.md").read_text()


def test_noise_reference_from_the_noise_module(tmp_path, tiny_dataset):
    import datasets

    shutil.copytree(tiny_dataset, tmp_path / "src")
    records = read_table(tiny_dataset, "records")
    (tmp_path / "src" / "noise").mkdir()
    pq.write_table(noise_module.noise_table(records, records), tmp_path / "src" / "noise" / "part-0.parquet")
    stats = build_release(str(tmp_path / "src"), str(tmp_path / "out"), NAME)
    ok = pc.sum(pc.equal(records["status"], "ok")).as_py()
    reference = stats["noise"]["reference"]
    assert stats["noise"]["rows"] == ok and reference["programs"] == ok
    # a run compared with itself agrees fully, and so does the oracle estimate
    assert reference["two_run_agreement"] == 1.0 and reference["oracle_opa"] == 1.0
    text = (tmp_path / "out" / "README.md").read_text()
    assert f"| `programs` | {ok} |" in text and "`per_task` (2 entries)" in text
    assert "| `two_run_agreement` | 1 | two-run agreement, mean over tasks |" in text
    assert "| `oracle_opa` | 1 |" in text and "| `oracle_opa_pooled` |" in text
    assert "ceiling" not in text.lower() and "highest" not in text.lower()
    loaded = datasets.load_dataset(str(tmp_path / "out"), "noise", split="train", cache_dir=str(tmp_path / "c"))
    assert loaded.num_rows == ok


def test_out_folder_safety(tmp_path, tiny_dataset):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ReleaseError, match="not a release folder"):
        build_release(tiny_dataset, str(tmp_path / "mine"), NAME)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ReleaseError, match="outside the source folder"):
        build_release(tiny_dataset, os.path.join(tiny_dataset, "release"), NAME)
    result = CliRunner().invoke(main, ["card", tiny_dataset])
    assert result.exit_code == 1 and "collection folder" in result.output


def test_records_are_sharded(tmp_path, tiny_dataset, monkeypatch):
    import datasets

    monkeypatch.setattr("cwm_bench.release.RECORDS_SHARD_ROWS", 5)
    build_release(tiny_dataset, str(tmp_path / "out"), NAME)
    shards = sorted(p.name for p in (tmp_path / "out" / "data" / "records").iterdir())
    assert shards == ["train-00000-of-00003.parquet", "train-00001-of-00003.parquet", "train-00002-of-00003.parquet"]
    assert [pq.ParquetFile(tmp_path / "out" / "data" / "records" / s).metadata.num_rows for s in shards] == [5, 5, 2]
    assert verify_checksums(str(tmp_path / "out")) == []
    records = datasets.load_dataset(str(tmp_path / "out"), "records", split="train", cache_dir=str(tmp_path / "c"))
    assert records["record_id"] == read_table(str(tmp_path / "out"), "records")["record_id"].to_pylist()
    assert len(set(records["record_id"])) == 12


def test_tasks_below_the_ok_minimum_are_left_out_and_named(tiny_dataset, tmp_path):
    from cwm_bench.rows.store import DatasetStore

    source = tmp_path / "source"
    shutil.copytree(tiny_dataset, source)
    store = DatasetStore(str(source))
    records = store.read("records")
    small = records["workload_id"][0].as_py()
    first_of_small = pc.index(records["workload_id"], small).as_py()
    kept = records.take([i for i in range(records.num_rows) if i != first_of_small])  # one ok record fewer
    for shard in store.shards("records"):
        os.remove(shard)
    store.write_arrow("records", kept)
    store.close()
    ok = pc.sum(pc.equal(kept.filter(pc.equal(kept["workload_id"], small))["status"], "ok")).as_py()

    stats = build_release(str(source), str(tmp_path / "out"), NAME, min_ok_per_task=ok + 1)
    released = read_table(str(tmp_path / "out"), "records")
    assert small not in set(released["workload_id"].to_pylist()) and released.num_rows > 0
    assert [t["workload_id"] for t in stats["release"]["excluded_tasks"]] == [small]
    assert f"with fewer than {ok + 1} ok records" in (tmp_path / "out" / "README.md").read_text()
    with pytest.raises(ReleaseError, match="no task has 1000 ok records"):
        build_release(str(source), str(tmp_path / "none"), NAME, min_ok_per_task=1000)


def test_the_cross_cpu_release_holds_the_intel_releases_programs_measured_on_another_cpu():
    """cwm-bench-znver4-v0 (README): the same record ids and programs as cwm-bench-cpu-v0, whole
    tasks, another hw_id, and the same split side for every record."""
    from cwm_bench.rows.reader import read_table

    root = os.path.join(os.path.dirname(__file__), "..", "datasets")
    columns = ["record_id", "workload_id", "program_hash", "hw_id", "split_within_task", "split_by_network"]
    intel = read_table(os.path.join(root, "cwm-bench-cpu-v0"), "records", columns).to_pylist()
    amd = read_table(os.path.join(root, "cwm-bench-znver4-v0"), "records", columns).to_pylist()
    by_id = {r["record_id"]: r for r in intel}
    assert len(amd) == 6900 and all(r["record_id"] in by_id for r in amd)
    for r in amd:
        other = by_id[r["record_id"]]
        assert r["hw_id"] != other["hw_id"]
        assert all(r[c] == other[c] for c in columns if c != "hw_id")
    tasks = {r["workload_id"] for r in amd}
    assert len(tasks) == 30 and sum(r["workload_id"] in tasks for r in intel) == len(amd)
