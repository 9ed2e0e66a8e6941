"""Candidate programs for one workload: random decisions per design space, and evolutionary rounds
guided by a cost model, both through MetaSchedule's own design spaces and postprocessors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cwm_bench.candidates.actions import replay_trace, trace_to_json
from cwm_bench.tvm_env import load_tensor_intrinsics, structural_hash_hex
from cwm_bench.workload.workload import Workload

ORIGINS = ("random", "evolutionary", "imported", "tuning")  # tuning: measured by `cwm-bench tune`


@dataclass
class Candidate:
    """One schedule of a workload, postprocessed and ready to build."""

    workload_id: str
    sch: Any  # tvm.s_tir.Schedule
    origin: str
    seed: int
    design_space: int  # index of the design space it was sampled from; -1 when unknown
    program_hash: str
    trace_json: str
    features: np.ndarray | None = None  # (num_stores, 164) MetaSchedule per-store features

    @property
    def mod(self):
        return self.sch.mod


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of the evolutionary phase. MetaSchedule's defaults (population 512, 4 iterations) cost
    over 1 s per candidate here on 2 cores; 64/2 costs ~0.25 s, below the measurement itself."""

    population_size: int = 64
    genetic_num_iters: int = 2
    init_measured_ratio: float = 0.2
    eps_greedy: float = 0.05
    num_threads: int = 2


@dataclass
class GeneratorStats:
    invalid: int = 0  # postprocessor rejected or raised
    duplicates: int = 0  # same final program as an earlier candidate
    by_origin: dict[str, int] = field(default_factory=dict)


class CandidateGenerator:
    """Draws distinct candidates for one workload and learns from measured results."""

    def __init__(self, workload: Workload, target, seed: int = 1, config: SearchConfig = SearchConfig()):
        load_tensor_intrinsics(target.kind.name)
        from tvm.s_tir import meta_schedule as ms

        self._ms = ms
        self.workload = workload
        self.target = target
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.stats = GeneratorStats()
        self.seen: set[str] = set()
        strategy = ms.search_strategy.EvolutionarySearch(
            population_size=config.population_size,
            init_measured_ratio=config.init_measured_ratio,
            init_min_unmeasured=min(50, config.population_size),
            genetic_num_iters=config.genetic_num_iters,
            genetic_mutate_prob=0.85,
            genetic_max_fail_count=10,
            eps_greedy=config.eps_greedy,
        )
        self.ctx = ms.TuneContext(mod=workload.mod, target=target, space_generator="post-order-apply",
                                  search_strategy=strategy, task_name=workload.task_name,
                                  rand_state=seed, num_threads=config.num_threads)
        self.spaces = list(self.ctx.generate_design_space())
        self.postprocs = list(self.ctx.space_generator.postprocs)
        self.args_info = ms.arg_info.ArgInfo.from_prim_func(workload.mod["main"])
        self.database = ms.database.MemoryDatabase()
        self.db_workload = self.database.commit_workload(workload.mod)
        self.cost_model = ms.cost_model.XGBModel(num_warmup_samples=0, num_tuning_cores=config.num_threads)
        self.feature_extractor = ms.feature_extractor.PerStoreFeature()
        self._evolution_batch: int | None = None
        # measured but not yet taught to the cost model: its refit waits until a search needs it
        # (random draws do not), so a task's random batches cost one XGB fit, not one each
        self._unlearned: list[tuple[Any, Any]] = []

    # -- drawing -------------------------------------------------------------------------------
    def random(self, n: int, max_attempts_per_candidate: int = 8) -> list[Candidate]:
        """Up to `n` new candidates: a random design space, every decision re-sampled, postprocessed."""
        from tvm.s_tir import Schedule

        out: list[Candidate] = []
        for _ in range(n * max_attempts_per_candidate):
            if len(out) == n:
                break
            space_index = int(self.rng.integers(len(self.spaces)))
            sch_seed = int(self.rng.integers(1, 2**31 - 1))
            sch = Schedule(self.workload.mod, seed=sch_seed)
            try:
                self.spaces[space_index].trace.apply_to_schedule(
                    sch, remove_postproc=True, decision_provider=lambda inst, inputs, attrs, decision: None)
                # Marks where postprocessing starts, so a replay with remove_postproc=True (as the
                # evolutionary search does with database traces) can strip it again.
                sch.enter_postproc()
                valid = all(p.apply(sch) for p in self.postprocs)
            except Exception:  # noqa: BLE001  (an invalid sample: counted, not fatal)
                valid = False
            if not valid:
                self.stats.invalid += 1
                continue
            candidate = self._accept(sch, "random", sch_seed, space_index)
            if candidate is not None:
                out.append(candidate)
        return self.add_features(out)

    def evolutionary(self, n: int) -> list[Candidate]:
        """Up to `n` new candidates from MetaSchedule's evolutionary search over the cost model."""
        self._learn()
        if self._evolution_batch is None or n > self._evolution_batch:
            if self._evolution_batch is not None:
                self.ctx.post_tuning()
            self.ctx.pre_tuning(max_trials=1 << 30, num_trials_per_iter=n, design_spaces=self.spaces,
                                database=self.database, cost_model=self.cost_model)
            self._evolution_batch = n
        proposed = self.ctx.generate_measure_candidates() or []
        out = []
        for measure_candidate in list(proposed)[:n]:
            candidate = self._accept(measure_candidate.sch, "evolutionary", self.seed, -1)
            if candidate is not None:
                out.append(candidate)
        return self.add_features(out)

    def imported(self, trace_json: str) -> Candidate | None:
        """Rebuild a candidate from a stored trace (None if its program was seen already)."""
        sch = replay_trace(trace_json, self.workload.mod)
        return self._accept(sch, "imported", 0, -1)

    # -- learning ------------------------------------------------------------------------------
    def observe(self, candidates: Sequence[Candidate], latencies: Sequence[float | None]) -> None:
        """Feed measured latencies (None = failed) to the cost model, database and search state."""
        ms = self._ms
        measured = [(c, lat) for c, lat in zip(candidates, latencies, strict=True) if lat is not None]
        if measured:
            mcs = [ms.search_strategy.MeasureCandidate(c.sch, self.args_info) for c, _ in measured]
            results = [ms.runner.RunnerResult(run_secs=[float(lat)], error_msg=None) for _, lat in measured]
            self._unlearned.extend(zip(mcs, results, strict=True))
            for (c, lat) in measured:
                self.database.commit_tuning_record(ms.database.TuningRecord(
                    c.sch.trace, self.db_workload, [float(lat)], self.target, self.args_info))
            if self._evolution_batch is not None:
                self.ctx.notify_runner_results(mcs, results)

    def observe_records(self, rows: Sequence[dict]) -> None:
        """Teach the search stored records (resume, or a next round): their ok rows' traces are
        replayed and observed with their latencies."""
        ok = [r for r in rows if r["status"] == "ok" and r["latency_s"]]
        seeds = [Candidate(self.workload.workload_id, replay_trace(r["trace_json"], self.workload.mod), "imported",
                           0, -1, r.get("program_hash") or "", r["trace_json"]) for r in ok]
        if seeds:
            self.observe(seeds, [r["latency_s"] for r in ok])

    def _learn(self) -> None:
        """Refit the cost model on everything observed since the last refit (one XGB fit)."""
        if self._unlearned:
            mcs, results = (list(x) for x in zip(*self._unlearned, strict=True))
            self._unlearned = []
            self.cost_model.update(self.ctx, mcs, results)

    def remember(self, program_hashes: Sequence[str]) -> None:
        """Mark programs as already collected (resume): they will not be drawn again."""
        self.seen.update(program_hashes)

    # -- helpers -------------------------------------------------------------------------------
    def _accept(self, sch, origin: str, seed: int, space_index: int) -> Candidate | None:
        program_hash = structural_hash_hex(sch.mod)
        if program_hash in self.seen:
            self.stats.duplicates += 1
            return None
        self.seen.add(program_hash)
        self.stats.by_origin[origin] = self.stats.by_origin.get(origin, 0) + 1
        return Candidate(self.workload.workload_id, sch, origin, seed, space_index, program_hash,
                         trace_to_json(sch.trace))

    def add_features(self, candidates: list[Candidate]) -> list[Candidate]:
        if candidates:
            ms = self._ms
            mcs = [ms.search_strategy.MeasureCandidate(c.sch, self.args_info) for c in candidates]
            for c, feats in zip(candidates, self.feature_extractor.extract_from(self.ctx, mcs), strict=True):
                c.features = feats.numpy().astype(np.float32)
        return candidates
