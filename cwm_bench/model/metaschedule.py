"""Tune with any cwm-bench cost model inside MetaSchedule, and build/measure the way the collector does.

```python
load_tensor_intrinsics("llvm")            # before anything creates a TuneContext
with InProcessBuilder() as builder, IsolatedRunner() as runner:
    ms.tune_tir(mod, target, work_dir, max_trials_global=64, builder=builder, runner=runner,
                cost_model=as_metaschedule_cost_model(create_model("ansor-xgb")))
```

The adapter feeds live candidates to the model through the same sealed seam as a dataset
(`cwm_bench.model.records.seal`): the same columns, types and values for the same program, and only
the input groups the model declares are computed (per-store features only for models that read
them), so a model behaves the same offline and inside the search.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from cwm_bench.candidates.actions import ActionCache, actions_from_trace_json, trace_to_json
from cwm_bench.hardware import HardwareDescriptor, detect_cpu
from cwm_bench.model.base import CostModel
from cwm_bench.model.records import LABEL_COLUMN, Records, check_inputs, input_columns, seal
from cwm_bench.rows.records import record_id, workload_row
from cwm_bench.rows.schema import FEATURE_DIM, RECORDS, WORKLOADS
from cwm_bench.tvm_env import structural_hash_hex
from cwm_bench.workload.workload import Workload

__all__ = ["InProcessBuilder", "IsolatedRunner", "as_metaschedule_cost_model", "hardware_of_target"]


def hardware_of_target(target) -> HardwareDescriptor:
    """The hardware columns for a target: this host's CPU for llvm (mcpu and num-cores from the
    target when set), the target's arch for cuda."""
    attrs = target.attrs
    if target.kind.name == "llvm":
        host = detect_cpu(int(attrs["num-cores"]) if "num-cores" in attrs else None)
        return dataclasses.replace(host, arch=str(attrs["mcpu"])) if "mcpu" in attrs else host
    arch = str(attrs.get("arch", target.kind.name))
    return HardwareDescriptor(kind="gpu", name=arch, arch=arch, num_cores=0)


class _Adapter(ms.cost_model.PyCostModel):
    """`ms.cost_model.PyCostModel` over a cwm-bench `CostModel` (wrapped by `derived_object` below)."""

    def __init__(self, model: CostModel, workload_lookup: Mapping[str, Workload] | None = None,
                 refit_every: int = 1, hardware: HardwareDescriptor | None = None, seed: int = 0,
                 inputs=None):
        self.model = model
        self._inputs = None if inputs is None else check_inputs(inputs)
        self.workload_lookup = dict(workload_lookup or {})
        self.refit_every = refit_every
        self.hardware = hardware
        self.rng = np.random.default_rng(seed)
        self.trainable = bool(getattr(model, "trainable", True))
        # A pre-trained (or untrainable) model predicts from the start; TVM's XGBModel predicts random
        # scores until it has data, and so does an untrained model here.
        self.fitted = bool(getattr(model, "is_fitted", True))
        self.predict_calls = 0
        self.update_calls = 0
        self.fits = 0
        self.history: list[pa.Table] = []  # labelled, sealed records of every update, all tasks
        self._workloads: dict[str, dict] = {}  # workload_id -> workloads-table row
        self._offset: dict[str, float] = {}  # workload_id -> shift making scores positive (see _positive)
        self._actions = ActionCache()  # trace line -> action, for the "actions" group

    @property
    def inputs(self) -> frozenset[str]:
        """The input groups computed for each candidate: the model's own, unless overridden (to measure
        what computing more costs: the model still receives only the groups it declares)."""
        return self._inputs if self._inputs is not None else check_inputs(self.model.inputs)

    # -- PyCostModel ---------------------------------------------------------------------------
    def load(self, path: str) -> None:
        from cwm_bench.model.base import load_checkpoint

        self.model = load_checkpoint(path)
        self.fitted, self._offset = True, {}

    def save(self, path: str) -> None:
        self.model.save(path)

    def update(self, context, candidates: list, results: list) -> None:
        self.update_calls += 1
        keep = [i for i, r in enumerate(results) if r.error_msg is None and r.run_secs and len(r.run_secs)]
        if keep and self.refit_every:  # refit_every=0 (frozen): no history, it is never fitted on
            table = self._table(context, [candidates[i] for i in keep])
            # the median of the timings, as a dataset's latency_s (robust to a slow spell)
            latency = [float(np.median([float(s) for s in results[i].run_secs])) for i in keep]
            self.history.append(table.append_column(LABEL_COLUMN, pa.array(latency, pa.float64())))
        if self.trainable and self.history and self.refit_every and self.update_calls % self.refit_every == 0:
            history = seal(pa.concat_tables(self.history), self.model.inputs, labelled=True)
            self.model.fit(Records(history, self._workload_table()), progress=False)
            self.fitted, self._offset = True, {}  # new scores, new scale
            self.fits += 1

    def predict(self, context, candidates: list) -> np.ndarray:
        self.predict_calls += 1
        if not self.fitted:
            return self.rng.uniform(0.0, 1.0, size=len(candidates))
        table = seal(self._table(context, candidates), self.model.inputs)  # computed: self.inputs; seen: the model's
        scores = np.asarray(self.model.score(Records(table, self._workload_table())), dtype=np.float64)
        return self._positive(table.column("workload_id")[0].as_py(), scores)

    # -- helpers -------------------------------------------------------------------------------
    def _positive(self, workload_id: str, scores: np.ndarray) -> np.ndarray:
        """MetaSchedule clamps scores at 0 and samples parents in proportion to them
        (evolutionary_search.cc), while our contract is only "higher = faster". Non-negative scores
        pass unchanged (as TVM's XGBModel gives them); otherwise every score of the task is shifted by
        one offset, fixed on the task's first call after a fit so scores of later calls stay comparable."""
        if workload_id not in self._offset:
            low, high = float(scores.min()), float(scores.max())
            self._offset[workload_id] = 0.0 if low >= 0 else -low + max(high - low, abs(low) * 1e-3, 1e-9)
        return np.nan_to_num(scores + self._offset[workload_id], nan=0.0, posinf=0.0, neginf=0.0)

    def _workload(self, context) -> dict:
        workload_id = structural_hash_hex(context.mod)
        if workload_id not in self._workloads:
            w = self.workload_lookup.get(workload_id)
            if w is None:
                from cwm_bench.workload.relax_import import classify_family

                name = str(context.task_name or "main")
                w = Workload.from_mod(context.mod, name, classify_family(context.mod, name), "imported")
            self._workloads[workload_id] = {**workload_row(w), "workload_id": workload_id}
        return self._workloads[workload_id]

    def _workload_table(self) -> pa.Table:
        return pa.Table.from_pylist(list(self._workloads.values()), schema=WORKLOADS)

    def _table(self, context, candidates: list) -> pa.Table:
        """The sealed model inputs for live candidates of one task: only the declared groups are computed."""
        workload_id = self._workload(context)["workload_id"]
        hw = self.hardware = self.hardware or hardware_of_target(context.target)
        wanted = set(input_columns(self.inputs))
        n = len(candidates)
        columns: dict[str, Any] = {"workload_id": [workload_id] * n}
        if "record_id" in wanted:
            columns["record_id"] = [record_id(workload_id, structural_hash_hex(c.sch.mod)) for c in candidates]
        if "trace_json" in wanted:
            traces = [trace_to_json(c.sch.trace) for c in candidates]
            columns["trace_json"] = traces
            if "actions" in wanted:
                columns["actions"] = pa.array([actions_from_trace_json(t) for t in traces],
                                              RECORDS.field("actions").type)
        elif "actions" in wanted:  # without the JSON: from the traces' Python text, cached (~6x cheaper)
            columns["actions"] = pa.array([self._actions.actions_of(c.sch.trace) for c in candidates],
                                          RECORDS.field("actions").type)
        if "features" in wanted:
            feats = [f.numpy().astype(np.float32).reshape(-1, FEATURE_DIM)
                     for f in ms.feature_extractor.PerStoreFeature().extract_from(context, candidates)]
            offsets = np.concatenate([[0], np.cumsum([len(f) for f in feats])]).astype(np.int32)
            flat = np.concatenate(feats).reshape(-1) if feats else np.zeros(0, np.float32)
            stores = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), FEATURE_DIM)
            columns["features"] = pa.ListArray.from_arrays(pa.array(offsets), stores)
        if "hw_id" in wanted:
            columns.update({"hw_id": [hw.hw_id] * n, "hw_kind": [hw.kind] * n, "hw_name": [hw.name] * n,
                            "hw_arch": [hw.arch] * n, "hw_num_cores": pa.array([hw.num_cores] * n, pa.int32()),
                            "hw_isa": pa.array([list(hw.isa)] * n, pa.list_(pa.string())),
                            "hw_descriptor": [hw.to_json()] * n})
        return seal(pa.table(columns), self.inputs)


_CostModelAdapter = derived_object(_Adapter)


def as_metaschedule_cost_model(model: CostModel, workload_lookup: Mapping[str, Workload] | None = None,
                               refit_every: int = 1, hardware: HardwareDescriptor | None = None,
                               seed: int = 0, inputs=None) -> Any:
    """A MetaSchedule cost model (`ms.cost_model.PyCostModel`) that scores with `model`.

    predict: candidates -> sealed `Records` (the groups of `model.inputs`: record ids, trace JSON,
    actions, per-store features, hardware columns; and this task's workload row) -> `model.score`.
    update: measured candidates (errors skipped; latency = median of run_secs, as in datasets) are
    kept, and a trainable model is refit on all of them every `refit_every` updates (0: never, so a
    pre-trained checkpoint stays as it was trained).
    `workload_lookup` maps a task's id (structural hash of its module) to its `Workload` (task name,
    family, networks); unknown tasks get one built from the module. `inputs` makes the adapter
    compute other groups than the model's (benchmarks measure what computing every group costs);
    the model still receives only its own. Counters `predict_calls`, `update_calls` and `fits` are
    readable on the returned object.
    """
    return _CostModelAdapter(model, workload_lookup, refit_every, hardware, seed, inputs)


@contextlib.contextmanager
def counting_seconds(owner):
    """Add the wall time of the block to `owner.seconds` (tuning reports split a run's time)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        owner.seconds += time.perf_counter() - started


class _Builder(ms.builder.PyBuilder):
    def __init__(self, num_workers: int | None = None, timeout_s: float = 120.0):
        self.num_workers = num_workers
        self.timeout_s = timeout_s
        self._builders: dict[str, Any] = {}
        self._count = 0
        self.seconds = 0.0  # wall time spent in build(), for tuning reports

    def build(self, build_inputs: list) -> list:
        with counting_seconds(self):
            return self._build(build_inputs)

    def _build(self, build_inputs: list) -> list:
        from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

        from cwm_bench.build.builder import ParallelBuilder

        results: list = [None] * len(build_inputs)
        by_target: dict[str, list[int]] = {}
        for i, item in enumerate(build_inputs):
            by_target.setdefault(str(item.target), []).append(i)
        for target_json, indices in by_target.items():
            if target_json not in self._builders:
                self._builders[target_json] = ParallelBuilder(target_json, self.num_workers, self.timeout_s)
            items = []
            for i in indices:
                self._count += 1
                # As MetaSchedule's default_build (local_builder.py) does before compiling.
                mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(build_inputs[i].mod)
                items.append((f"ms-{self._count}", mod))
            builder = self._builders[target_json]
            for i, built in zip(indices, builder.build(items), strict=True):
                path = built.lib_path
                if path:  # MetaSchedule's RemoveBuildArtifact deletes the artifact's whole folder
                    folder = tempfile.mkdtemp(prefix="ms-", dir=builder.artifact_dir)
                    path = os.path.join(folder, os.path.basename(built.lib_path))
                    os.replace(built.lib_path, path)
                results[i] = ms.builder.BuilderResult(path, built.error)
        return results

    def close(self) -> None:
        for builder in self._builders.values():
            builder.close()
        self._builders.clear()


class _Runner(ms.runner.PyRunner):
    def __init__(self, protocol=None, num_threads: int | None = None, seed: int = 0):
        from cwm_bench.measure.protocol import MeasureProtocol

        self.protocol = protocol or MeasureProtocol(check_fraction=0.0)
        self.num_threads = num_threads
        self.seed = seed
        self._runners: dict[str, Any] = {}
        self._count = 0
        self.seconds = 0.0  # wall time spent in run() (it measures before returning), for tuning reports

    def run(self, runner_inputs: list) -> list:
        with counting_seconds(self):
            return self._run(runner_inputs)

    def _run(self, runner_inputs: list) -> list:
        from cwm_bench.measure.runner import MeasureItem, Runner

        by_device: dict[str, list[int]] = {}
        for i, item in enumerate(runner_inputs):
            by_device.setdefault("cuda" if "cuda" in str(item.device_type) else "cpu", []).append(i)
        results: list = [None] * len(runner_inputs)
        for device, indices in by_device.items():
            if device not in self._runners:
                self._runners[device] = Runner(self.protocol, device, self.num_threads, self.seed)
            items = []
            for i in indices:
                specs = [([int(d) for d in info.shape], str(info.dtype)) for info in runner_inputs[i].args_info]
                self._count += 1
                # Inputs are cached per workload id in the worker: programs with the same argument
                # shapes share them.
                inputs_id = hashlib.sha1(json.dumps(specs).encode()).hexdigest()[:16]
                items.append(MeasureItem(f"ms-{self._count}", str(runner_inputs[i].artifact_path), inputs_id, specs))
            for i, measured in zip(indices, self._runners[device].measure(items), strict=True):
                ok = measured.status == "ok" and measured.latencies_s
                result = ms.runner.RunnerResult([float(s) for s in measured.latencies_s] if ok else None,
                                                None if ok else (measured.error or measured.status))
                results[i] = ms.runner.RunnerFuture(lambda: True, lambda r=result: r)
        return results

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()


InProcessBuilder = derived_object(_Builder)
InProcessBuilder.__doc__ = """MetaSchedule builder over `ParallelBuilder`: persistent worker processes that
import TVM once, so no batch pays MetaSchedule's LocalBuilder start-up (~28 s of tensor-intrinsic
imports per worker here); a failed or hung compile is that candidate's error. `close()` (or `with`)
stops the workers."""
IsolatedRunner = derived_object(_Runner)
IsolatedRunner.__doc__ = """MetaSchedule runner over the collector's `Runner`: one persistent, isolated
worker times one kernel at a time under a `MeasureProtocol` (warm-up, calibration, interleaved
rounds); a kernel that crashes or hangs is that candidate's error. run_secs = every timing taken.
`close()` (or `with`) stops the worker."""

# `with` looks special methods up on the class, past derived_object's attribute forwarding.
for _cls in (InProcessBuilder, IsolatedRunner):
    _cls.__enter__ = lambda self: self
    _cls.__exit__ = lambda self, *exc: self.close()
