"""`cwm-bench merge`: several collectors' folders become one, duplicates dropped, conflicts reported."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from cwm_bench.merge import MergeError, merge_datasets
from cwm_bench.rows.store import DatasetStore


def _second_collector(tiny_dataset: str, folder: str, provenance_target: str | None = None) -> dict:
    """A folder as another collector would leave it: some of the same programs re-measured (2 with other
    timings), and 3 programs measured on another machine (another hw_id)."""
    source = DatasetStore(tiny_dataset, readonly=True)
    records = source.read("records").to_pylist()
    provenance = dict(source.provenance)
    if provenance_target:
        provenance["target"] = provenance_target
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    rows = []
    for i, r in enumerate(records):
        r = dict(r)
        if i < 2 and r["status"] == "ok":
            r["latencies_s"] = [x * 2 for x in r["latencies_s"]]
            r["latency_s"] *= 2
            r["measured_at"] = later
        rows.append(r)
    for r in records[:3]:
        rows.append({**r, "hw_id": "another-machine", "measured_at": later})
    store = DatasetStore(folder, provenance)
    store.write("workloads", source.read("workloads").to_pylist())
    store.write("records", rows)
    store.close()
    return {"n": len(records), "changed": {records[0]["record_id"], records[1]["record_id"]}}


def test_merge_drops_duplicates_and_reports_conflicts(tiny_dataset, tmp_path):
    from cwm_bench.validate import validate_dataset

    other = str(tmp_path / "other")
    facts = _second_collector(tiny_dataset, other)
    out = str(tmp_path / "merged")
    report = merge_datasets([tiny_dataset, other], out)

    assert report.records == facts["n"] + 3
    assert report.duplicates == facts["n"] - 2
    assert {c.record_id for c in report.conflicts} == facts["changed"]
    assert all(c.kept.startswith(tiny_dataset) for c in report.conflicts)  # the earlier measurement wins
    assert report.per_source == {tiny_dataset: facts["n"], other: 3}
    merged = DatasetStore(out, readonly=True)
    keys = [(r["record_id"], r["hw_id"]) for r in merged.read("records", ["record_id", "hw_id"]).to_pylist()]
    assert len(keys) == len(set(keys)) == facts["n"] + 3
    assert merged.read("workloads").num_rows == DatasetStore(tiny_dataset, readonly=True).read("workloads").num_rows
    assert len(merged.provenance["merged_from"]) == 2
    problems, _ = validate_dataset(out, replay_count=2)
    assert problems == []
    # Folder order does not decide: the earlier measurement is kept wherever it comes from.
    swapped = merge_datasets([other, tiny_dataset], str(tmp_path / "swapped"))
    assert all(c.kept.startswith(tiny_dataset) for c in swapped.conflicts) and len(swapped.conflicts) == 2


def test_merge_refuses_what_it_cannot_merge(tiny_dataset, tmp_path):
    with pytest.raises(MergeError, match="twice"):
        merge_datasets([tiny_dataset, tiny_dataset], str(tmp_path / "a"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(MergeError, match="not empty"):
        merge_datasets([tiny_dataset], str(tmp_path / "full"))
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    (tmp_path / "release" / "data").mkdir(parents=True)
    with pytest.raises(MergeError, match="not a collection folder"):
        merge_datasets([tiny_dataset, str(tmp_path / "release")], str(tmp_path / "b"))
    gpu = str(tmp_path / "gpu")
    _second_collector(tiny_dataset, gpu, provenance_target=json.dumps({"kind": "cuda"}))
    with pytest.raises(MergeError, match="target kinds"):
        merge_datasets([tiny_dataset, gpu], str(tmp_path / "c"))
    assert not (tmp_path / "c").exists()


def test_merge_cli_writes_every_conflict(tiny_dataset, tmp_path):
    from cwm_bench.cli import main

    other = str(tmp_path / "other")
    facts = _second_collector(tiny_dataset, other)
    conflicts = tmp_path / "conflicts.jsonl"
    result = CliRunner().invoke(main, ["merge", tiny_dataset, other, "--out", str(tmp_path / "m"),
                                       "--conflicts", str(conflicts)])
    assert result.exit_code == 0, result.output
    assert "2 conflicting duplicate(s)" in result.output
    lines = [json.loads(line) for line in conflicts.read_text().splitlines()]
    assert {c["record_id"] for c in lines} == facts["changed"]
    again = CliRunner().invoke(main, ["merge", tiny_dataset, "--out", str(tmp_path / "m")])
    assert again.exit_code == 1 and "not empty" in again.output
