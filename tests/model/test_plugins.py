"""Outside models as plugins: the example of docs/adding-a-model.md as written, --include, entry
points, checkpoints loading in a fresh process, and one namespace of names."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from cwm_bench.model import CostModel, register_model
from cwm_bench.model.registry import DuplicateModelError

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
DOC = os.path.join(ROOT, "docs", "adding-a-model.md")
RELEASE = os.path.abspath(os.path.join(ROOT, "datasets", "cwm-bench-h200-v0"))


def doc_model_code() -> str:
    """The first Python block of the doc: the complete example model."""
    with open(DOC) as handle:
        match = re.search(r"```python\n(.*?)```", handle.read(), re.S)
    assert match, "docs/adding-a-model.md has no python block"
    return match.group(1)


def cli(*args: str, cwd: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`cwm-bench ...` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "cwm_bench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_the_documented_model_trains_evaluates_and_loads_in_a_fresh_process(tmp_path):
    assert len(doc_model_code().splitlines()) <= 65  # "a complete ~50-line example"
    folder = tmp_path / "outside"  # a separate folder: nothing of the repository on its path
    folder.mkdir()
    (folder / "my_model.py").write_text(doc_model_code())
    trained = cli("train", "--include", "my_model.py", "--model", "action-ridge", "--data", RELEASE,
                  "--split", "within_task", "--out", "ckpt", cwd=str(folder))
    assert trained.returncode == 0, trained.stderr
    assert json.loads((folder / "ckpt" / "config.json").read_text())["class"] == "my_model:ActionRidge"

    evaluated = cli("evaluate", "--include", "my_model.py", "--model", "ckpt", "--data", RELEASE,
                    "--split", "within_task", "--json", "result.json", cwd=str(folder))
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads((folder / "result.json").read_text())
    assert result["model"] == "action-ridge" and result["notes"]["inputs"] == ["actions"]
    # it learns: scored on the within_task test side, which it never fitted (0.59 here; random 0.47)
    assert result["contaminated"] is False and result["metrics"]["opa"]["mean"] > 0.55

    missing = cli("evaluate", "--model", "ckpt", "--data", RELEASE, "--split", "within_task",
                  "--json", "again.json", cwd=str(folder))
    assert missing.returncode == 2 and not (folder / "again.json").exists()
    assert "model 'action-ridge' (my_model:ActionRidge), which is not registered here: pass --include" \
        in missing.stderr
    assert "Traceback" not in missing.stderr


def test_an_installed_entry_point_needs_no_include(tmp_path):
    site = tmp_path / "site"
    (site / "ridge_plugin").mkdir(parents=True)
    (site / "ridge_plugin" / "__init__.py").write_text(doc_model_code())
    dist = site / "ridge_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ridge-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cwm_bench.models]\naction-ridge = ridge_plugin:ActionRidge\n")
    env = {"PYTHONPATH": str(site)}
    trained = cli("train", "--model", "action-ridge", "--data", RELEASE, "--split", "within_task",
                  "--max-train-records", "300", "--out", str(tmp_path / "ckpt"), cwd=str(tmp_path), env=env)
    assert trained.returncode == 0, trained.stderr
    evaluated = cli("evaluate", "--model", str(tmp_path / "ckpt"), "--data", RELEASE, "--split", "within_task",
                    "--json", str(tmp_path / "r.json"), cwd=str(tmp_path), env=env)
    assert evaluated.returncode == 0, evaluated.stderr


def test_a_bad_include_is_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    for spec, message in (("broken.py", "RuntimeError: boom"), ("nope.py", "no such file"),
                          ("no_such_module", "No module named 'no_such_module'")):
        result = cli("evaluate", "--include", spec, "--model", "random", "--data", RELEASE, "--split",
                     "within_task", "--json", "r.json", cwd=str(tmp_path))
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def _constant(name: str):
    class Constant(CostModel):
        def fit(self, train, progress=True):
            pass

        def score(self, records):
            return [0.0] * len(records)

    Constant.__qualname__ = name
    return Constant


def test_a_name_registered_twice_is_an_error_naming_both_classes():
    from cwm_bench.model import registry

    first = register_model("test-twice")(_constant("First"))
    try:
        with pytest.raises(DuplicateModelError, match=r"'test-twice' is already registered by .*:First; .*:Second"):
            register_model("test-twice")(_constant("Second"))
        assert register_model("test-twice")(first) is first  # the same class again (a re-import) is fine
        # "belongs to" before tlp's module is imported, "is already registered by" after
        with pytest.raises(DuplicateModelError, match=r"'tlp' (belongs to|is already registered by) "
                                                      r"cwm_bench.baselines.tlp:TLPModel"):
            register_model("tlp")(_constant("MyTLP"))
    finally:
        registry._LOADED.pop("test-twice", None)


def test_an_undeclared_input_group_is_refused_at_registration():
    cls = _constant("Bad")
    cls.inputs = frozenset({"latency"})
    with pytest.raises(ValueError, match="unknown input group"):
        register_model("test-bad-inputs")(cls)


def test_an_entry_point_may_name_a_re_export(tmp_path):
    site = tmp_path / "site"
    (site / "my_package").mkdir(parents=True)
    (site / "my_package" / "my_model.py").write_text(doc_model_code())
    (site / "my_package" / "__init__.py").write_text("from my_package.my_model import ActionRidge\n")
    dist = site / "my_package-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-package\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cwm_bench.models]\naction-ridge = my_package:ActionRidge\n")
    trained = cli("train", "--model", "action-ridge", "--data", RELEASE, "--split", "within_task",
                  "--max-train-records", "100", "--out", str(tmp_path / "ckpt"), cwd=str(tmp_path),
                  env={"PYTHONPATH": str(site)})
    assert trained.returncode == 0, trained.stderr


def test_an_include_may_not_shadow_an_imported_module(tmp_path):
    (tmp_path / "shadow").mkdir()  # not the working directory, which `python -m` puts first on sys.path
    (tmp_path / "shadow" / "json.py").write_text(doc_model_code())
    result = cli("evaluate", "--include", "shadow/json.py", "--model", "random", "--data", RELEASE, "--split",
                 "within_task", "--json", "r.json", cwd=str(tmp_path))
    assert result.returncode == 2 and "the module name 'json' is already taken" in result.stderr
    assert "Traceback" not in result.stderr
