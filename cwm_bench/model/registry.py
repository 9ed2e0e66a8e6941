"""Named cost models: built-ins, plugins from installed packages, and modules a user includes.

Entries are `module:Class` import paths, imported on first use, so listing models imports neither
torch nor xgboost. Three ways in, one namespace (a name registered twice is an error naming both):

- built-ins (`_BUILTIN` below);
- installed packages: an entry point in the group `cwm_bench.models`, e.g. in a plugin's pyproject:
  `[project.entry-points."cwm_bench.models"] my-model = "my_pkg.model:MyModel"`;
- `include("my_model.py")` / `--include my_pkg.model` on the CLI: imports a file or module whose
  classes use `@register_model("my-model")`.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from types import ModuleType

from cwm_bench.model.base import CostModel

ENTRY_POINT_GROUP = "cwm_bench.models"
_BUILTIN: dict[str, str] = {
    "random": "cwm_bench.baselines.floors:RandomModel",
    "flops": "cwm_bench.baselines.floors:FlopsModel",
    "ansor-xgb": "cwm_bench.baselines.ansor_xgb:AnsorXGBModel",
    "ansor-xgb-rank": "cwm_bench.baselines.ansor_xgb:AnsorXGBRankModel",
    "tenset-mlp": "cwm_bench.baselines.tenset_mlp:TenSetMLPModel",
    "tlp": "cwm_bench.baselines.tlp:TLPModel",
    "world-model": "cwm_bench.reference_model.world_model:WorldModel",
}
_LOADED: dict[str, type[CostModel]] = {}
_lazy: dict[str, str] | None = None  # built-ins + entry points, read on first use
_importing: set[str] = set()  # names whose lazy entry is being imported (see model_class)


class UnknownModelError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class DuplicateModelError(ValueError):
    """Two different classes claim one model name."""


def _path_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _lazy_entries() -> dict[str, str]:
    global _lazy
    if _lazy is None:
        entries = dict(_BUILTIN)
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in entries and entries[ep.name] != ep.value:
                raise DuplicateModelError(f"model name {ep.name!r} is claimed by {entries[ep.name]} and by the "
                                          f"entry point {ep.value} (package {ep.dist.name if ep.dist else '?'})")
            entries[ep.name] = ep.value
        _lazy = entries
    return _lazy


def register_model(name: str):
    """Class decorator: `@register_model("my-model") class MyModel(CostModel): ...`.

    Registering a name another class already holds raises DuplicateModelError (the same class
    imported again, e.g. a module reloaded, is fine)."""

    def decorate(cls: type[CostModel]) -> type[CostModel]:
        if not isinstance(cls, type) or not issubclass(cls, CostModel):
            raise TypeError(f"{getattr(cls, '__name__', cls)} must subclass cwm_bench.model.CostModel")
        if not name or not isinstance(name, str):
            raise ValueError(f"{cls.__name__}: a model name must be a non-empty string")
        from cwm_bench.model.records import check_inputs

        try:
            cls.inputs = check_inputs(cls.inputs)
        except ValueError as exc:
            raise ValueError(f"{_path_of(cls)}: {exc}") from None
        held = _LOADED.get(name)
        lazy = _lazy_entries().get(name)
        if held is not None and _path_of(held) != _path_of(cls):
            raise DuplicateModelError(f"model name {name!r} is already registered by {_path_of(held)}; "
                                      f"{_path_of(cls)} cannot take it")
        # while its own entry is imported, the class may live elsewhere (an entry point naming a
        # re-export, "pkg:Model" for pkg.model:Model): model_class compares the objects afterwards
        if held is None and lazy is not None and lazy != _path_of(cls) and name not in _importing:
            raise DuplicateModelError(f"model name {name!r} belongs to {lazy}; {_path_of(cls)} cannot take it")
        cls.name = name
        _LOADED[name] = cls
        return cls

    return decorate


def model_names() -> list[str]:
    return sorted(set(_lazy_entries()) | set(_LOADED))


def model_class(name: str) -> type[CostModel]:
    if name in _LOADED:
        return _LOADED[name]
    entries = _lazy_entries()
    if name not in entries:
        close = difflib.get_close_matches(name, model_names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}.{hint} Valid models: {', '.join(model_names())} "
                                f"(outside models: --include MODULE, or an installed {ENTRY_POINT_GROUP} entry point)")
    module_name, _, class_name = entries[name].partition(":")
    _importing.add(name)
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    finally:
        _importing.discard(name)
    if name not in _LOADED:  # a class without the decorator (an entry point may name any CostModel)
        register_model(name)(cls)
    elif _LOADED[name] is not cls:
        raise DuplicateModelError(f"model name {name!r} belongs to {entries[name]}; {_path_of(_LOADED[name])} "
                                  "cannot take it")
    return _LOADED[name]


def create_model(name: str, **config) -> CostModel:
    return model_class(name)(**config)


def include(spec: str) -> ModuleType:
    """Import a module that registers models: a path to a `.py` file or a package folder, or a dotted
    module name importable from the current directory or the installed packages."""
    if spec.endswith(".py") or os.path.sep in spec or os.path.isdir(spec):
        path = os.path.abspath(spec)
        if not os.path.exists(path):
            raise FileNotFoundError("no such file or folder")
        if os.path.isdir(path):
            parent, module_name = os.path.dirname(path), os.path.basename(path)
            if not os.path.exists(os.path.join(path, "__init__.py")):
                raise ImportError("a folder must be a package (with __init__.py)")
            _refuse_shadowing(module_name, os.path.join(path, "__init__.py"))
            if parent not in sys.path:
                sys.path.insert(0, parent)
            return importlib.import_module(module_name)
        module_name = os.path.splitext(os.path.basename(path))[0]
        _refuse_shadowing(module_name, path)
        if module_name in sys.modules:
            return sys.modules[module_name]  # this very file, included before
        spec_ = importlib.util.spec_from_file_location(module_name, path)
        if spec_ is None or spec_.loader is None:
            raise ImportError("cannot import this file")
        module = importlib.util.module_from_spec(spec_)
        sys.modules[module_name] = module  # so its classes pickle/resolve by module name, like any import
        try:
            spec_.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does
    return importlib.import_module(spec)


def _refuse_shadowing(module_name: str, path: str) -> None:
    """A file named like a module already imported from elsewhere (json.py, another model.py) would
    replace it for everyone: refused; rename the file."""
    loaded = sys.modules.get(module_name)
    if loaded is None:
        return
    where = getattr(loaded, "__file__", None)
    if where is None or os.path.realpath(where) != os.path.realpath(path):
        raise ImportError(f"the module name {module_name!r} is already taken by {where or 'a built-in module'}; "
                          "rename the file")
