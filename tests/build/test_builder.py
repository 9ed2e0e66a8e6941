"""Parallel isolated builds of real modules."""

from __future__ import annotations

import os

from cwm_bench.build.builder import ParallelBuilder


def test_builds_candidates_and_reports_bad_input(generator, target):
    candidates = generator.random(3)
    builder = ParallelBuilder(str(target), num_workers=2, timeout_s=120)
    try:
        results = builder.build([(c.program_hash, c.mod) for c in candidates])
        assert [r.status for r in results] == ["ok"] * 3
        assert all(os.path.getsize(r.lib_path) > 0 for r in results)
        assert [r.key for r in results] == [c.program_hash for c in candidates]
        # A module TVM cannot compile for this target: a build_error row, and the pool goes on.
        bad = builder.pool.map([{"mod_json": "{not json", "target": str(target), "out_path": "/tmp/x.so"}], 60)
        assert bad[0].status == "error" and "Error" in bad[0].message
        again = builder.build([(candidates[0].program_hash + "-again", candidates[0].mod)])
        assert again[0].status == "ok"
        builder.discard(results)
        assert not any(os.path.exists(r.lib_path) for r in results)
    finally:
        builder.close()
