"""Candidate generation on a real 64x64x64 matmul: random + evolutionary, distinct, replayable."""

from __future__ import annotations

import numpy as np

from cwm_bench.candidates.actions import replay_trace
from cwm_bench.rows.schema import FEATURE_DIM
from cwm_bench.tvm_env import structural_hash_hex


def test_random_candidates_are_distinct_replayable_and_featurized(generator, matmul):
    candidates = generator.random(6)
    assert len(candidates) == 6
    assert len({c.program_hash for c in candidates}) == 6
    for c in candidates:
        assert c.origin == "random" and 0 <= c.design_space < len(generator.spaces)
        assert structural_hash_hex(replay_trace(c.trace_json, matmul.mod).mod) == c.program_hash
        assert c.features.ndim == 2 and c.features.shape[1] == FEATURE_DIM
        assert np.isfinite(c.features).all()


def test_evolutionary_candidates_after_feedback_are_new(generator, matmul):
    random = generator.random(8)
    generator.observe(random, [1e-4 * (i + 1) for i in range(len(random))])
    evolved = generator.evolutionary(4)
    assert 1 <= len(evolved) <= 4
    assert all(c.origin == "evolutionary" for c in evolved)
    assert not {c.program_hash for c in evolved} & {c.program_hash for c in random}
    for c in evolved:
        assert structural_hash_hex(replay_trace(c.trace_json, matmul.mod).mod) == c.program_hash


def test_remembered_programs_are_not_drawn_again(matmul, target):
    from cwm_bench.candidates.generate import CandidateGenerator

    first = CandidateGenerator(matmul, target, seed=11).random(5)
    again = CandidateGenerator(matmul, target, seed=11)
    again.remember([c.program_hash for c in first])
    assert not {c.program_hash for c in again.random(5)} & {c.program_hash for c in first}
    assert again.stats.duplicates >= 1  # same seed: the same draws come first and are refused
