"""The parent side of tools/cuda_measure.py (restarts, give-ups, grouping) against a scripted worker:
the real worker needs a GPU, but what the parent does with its replies must hold without one."""

from __future__ import annotations

import pytest

from tests.cuda.conftest import TOOLS  # noqa: F401  (tools_on_path uses it)


class ScriptedWorker:
    """Answers like tools/cuda_worker.py; `fail` maps (op, key) to how many times that request fails."""

    def __init__(self, fail: dict | None = None, setup_fails: int = 0):
        self.fail = dict(fail or {})
        self.setup_fails = setup_fails
        self.kills = 0
        self.loaded: set[str] = set()

    def call(self, op: str, timeout=None, **req):
        if op == "workload":
            if self.setup_fails:
                self.setup_fails -= 1
                return "run_error", "worker crashed during workload"
            return "ok", {"reference": req.get("reference") is not None, "flush_error": None}
        key = req["key"]
        if self.fail.get((op, key), 0):
            self.fail[(op, key)] -= 1
            return "run_error", f"worker crashed during {op}"
        if op == "load":
            self.loaded.add(key)
            return "ok", {"per_call_s": 1e-5}
        assert key in self.loaded, f"{op} of {key} before it was (re)loaded"
        if op == "time":
            return "ok", {"latencies_s": [1e-5] * req["repeats"]}
        return "ok", {"match": True, "max_abs_error": 0.0}

    def kill(self):
        self.kills += 1
        self.loaded.clear()  # a fresh process has nothing loaded


def _session(tools_on_path, worker, *extra):
    import cuda_measure

    session = cuda_measure.Session(cuda_measure.parse_args(["b", "--rounds", "2", "--repeats", "3", *extra]),
                                   flush_bytes=0)
    session.worker = worker
    return session


SPEC = {"task_name": "t", "arg_specs": [], "reference": "libs/ref.so", "bundle": "/b1"}
ITEMS = [{"key": k, "lib": f"libs/{k}.so", "bundle": "/b1"} for k in ("a", "b", "c")]


def test_a_kernel_that_crashes_while_timed_is_charged_and_the_rest_keep_their_timings(tools_on_path):
    worker = ScriptedWorker({("time", "b"): 1})
    session = _session(tools_on_path, worker)
    session.measure_group(SPEC, ITEMS)
    r = session.results
    assert r["b"]["status"] == "run_error" and r["b"]["error"].startswith("time: worker crashed")
    assert worker.kills == 1  # a fresh process after a CUDA error
    for k in ("a", "c"):
        assert r[k]["status"] == "ok" and len(r[k]["latencies_s"]) == 6 and r[k]["checked"]


def test_a_workload_that_cannot_be_set_up_is_all_errors(tools_on_path):
    session = _session(tools_on_path, ScriptedWorker(setup_fails=2))
    session.measure_group(SPEC, ITEMS)
    assert {k: v["status"] for k, v in session.results.items()} == dict.fromkeys("abc", "run_error")
    assert all(v["error"].startswith("setup: ") for v in session.results.values())


def test_a_crash_in_the_output_check_is_not_ok(tools_on_path):
    session = _session(tools_on_path, ScriptedWorker({("check", "a"): 1}))
    session.measure_group(SPEC, ITEMS)
    r = session.results
    assert r["a"]["status"] == "run_error" and r["a"]["error"].startswith("check: ")
    assert r["b"]["checked"] and r["c"]["checked"] and r["b"]["status"] == r["c"]["status"] == "ok"


def test_repeated_crashes_give_up_the_workload_instead_of_looping(tools_on_path):
    import cuda_measure

    items = [dict(ITEMS[0], key=k) for k in "abcdefg"]
    worker = ScriptedWorker({("time", c["key"]): 99 for c in items})  # every kernel brings the worker down
    session = _session(tools_on_path, worker)
    session.measure_group(SPEC, items)
    assert worker.kills <= cuda_measure.MAX_RESTARTS + 1
    assert len(session.results) == len(items) and all(v["status"] != "ok" for v in session.results.values())
    given_up = [v for v in session.results.values() if "gave up after" in v["error"]]
    assert len(given_up) == len(items) - (cuda_measure.MAX_RESTARTS + 1)  # the rest failed themselves


def test_workloads_are_grouped_across_bundles(tools_on_path):
    import cuda_measure

    def manifest(keys):
        return {"workloads": {"w1": {"task_name": "t1"}, "w2": {"task_name": "t2"}},
                "candidates": [{"key": k, "workload_id": w, "lib": f"libs/{k}.so"} for k, w in keys]}

    work = [("/x/b0", manifest([("a", "w1"), ("b", "w2")])), ("/x/b1", manifest([("c", "w1")]))]
    groups = cuda_measure.workload_groups(work)
    assert [(s["task_name"], s["bundle"], [(c["key"], c["bundle"]) for c in items]) for s, items in groups] == [
        ("t1", "/x/b0", [("a", "/x/b0"), ("c", "/x/b1")]), ("t2", "/x/b0", [("b", "/x/b0")])]


@pytest.mark.parametrize("fraction,expected", [(0.5, 2), (0.01, 1), (1.0, 3)])
def test_remeasure_share_counts_small_tasks(fraction, expected):
    import math

    assert math.ceil(3 * min(1.0, fraction)) == expected
