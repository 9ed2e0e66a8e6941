"""Packaging: one import name, `cwm_bench`. The folders baselines/, data_cards/, reference_model/ and
leaderboard/ install as cwm_bench.baselines, ... (pyproject.toml lists every package by hand)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Folders installed under another name: folder -> package (everything else lives in cwm_bench/ itself).
MOVED = {"baselines": "cwm_bench.baselines", "data_cards": "cwm_bench.data_cards",
         "reference_model": "cwm_bench.reference_model", "leaderboard": "cwm_bench.leaderboard"}
SKIPPED_DIRS = {".venv", "datasets", "node_modules", "__pycache__"}
SKIPPED_AT_ROOT = {"build", "dist"}  # setuptools' output (cwm_bench/build/ is a package)


def _setuptools() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]


def _package_folders() -> dict[str, str]:
    """Every folder under cwm_bench/ and the moved folders that holds an __init__.py -> its package name."""
    found = {}
    for top, package in {"cwm_bench": "cwm_bench", **MOVED}.items():
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
            if "__init__.py" in files:
                rel = os.path.relpath(folder, os.path.join(ROOT, top)).replace(os.sep, ".")
                found[os.path.relpath(folder, ROOT)] = package if rel == "." else f"{package}.{rel}"
    return found


def test_every_package_folder_is_listed_in_pyproject():
    listed, folders = _setuptools()["packages"], _package_folders()
    missing = sorted(f"{name} ({folder}/)" for folder, name in folders.items() if name not in listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    stale = sorted(set(listed) - set(folders.values()))
    assert not stale, f"listed in pyproject.toml but no such package folder: {stale}"
    assert len(listed) == len(set(listed))


def test_moved_folders_map_onto_cwm_bench_names():
    assert _setuptools()["package-dir"] == {package: folder for folder, package in MOVED.items()}


def test_folders_with_modules_are_packages():
    """A folder of .py files without __init__.py would silently be left out of the wheel."""
    lacking = []
    for top in ("cwm_bench", *MOVED):
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")]
            if any(f.endswith(".py") for f in files) and "__init__.py" not in files:
                lacking.append(os.path.relpath(folder, ROOT))
    assert not lacking, f"folders with modules but no __init__.py: {lacking}"


def test_wheel_holds_only_cwm_bench(tmp_path):
    """Build a wheel from a copy of the sources (the build writes build/ and *.egg-info beside them)."""
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for top in ("cwm_bench", *MOVED):
        shutil.copytree(os.path.join(ROOT, top), source / top, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    out = tmp_path / "wheel"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "--disable-pip-version-check", "-q", "-w", str(out), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("cwm_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    dist_info = {t for t in top_level if t.startswith("cwm_bench-") and t.endswith(".dist-info")}
    assert len(dist_info) == 1 and top_level - dist_info == {"cwm_bench"}, sorted(top_level)
    assert "cwm_bench/baselines/floors.py" in names and "cwm_bench/data_cards/card.py" in names
    expected = {f"{package.replace('.', '/')}/__init__.py" for package in _package_folders().values()}
    assert not expected - set(names), sorted(expected - set(names))


_MODULE_STRING = re.compile(rf"^(?:{'|'.join(MOVED)})(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"
                            rf"|^(?:{'|'.join(MOVED)})(?:\.[a-z_]\w*)+$")
_NOT_MODULES = {"py", "md", "json", "yaml", "yml", "txt", "toml", "csv", "parquet", "png"}  # file names


def _old_imports(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            hits += [f"{node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] in MOVED]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in MOVED:
            hits.append(f"{node.lineno}: from {node.module} import ...")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING.match(node.value)
              and node.value.rsplit(".", 1)[-1] not in _NOT_MODULES):
            hits.append(f"{node.lineno}: {node.value!r} (a module path, e.g. for import_module or a registry)")
    return hits


def test_nothing_imports_the_old_top_level_names():
    """`baselines` etc. are not importable once installed: only `cwm_bench.baselines`, ..."""
    bad = {}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
                   and not (folder == ROOT and d in SKIPPED_AT_ROOT)]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                hits = _old_imports(path)
                if hits:
                    bad[os.path.relpath(path, ROOT)] = hits
    assert not bad, f"import these as cwm_bench.<name>: {bad}"


@pytest.mark.parametrize("line, flagged", [
    ("from baselines.tlp import Tokens", True), ("import leaderboard", True), ("import data_cards.card as c", True),
    ("x = 'reference_model.model:Net'", True), ("x = 'baselines.floors'", True),
    ("from cwm_bench.baselines.tlp import Tokens", False), ("from . import baselines", False),
    ("x = 'leaderboard'", False), ("x = 'baselines.md'", False), ("# import baselines", False),
])
def test_the_import_check_itself(tmp_path, line, flagged):
    path = tmp_path / "m.py"
    path.write_text(line + "\n")
    assert bool(_old_imports(str(path))) is flagged
