"""Named cost models. Entries are import paths, so listing models imports neither torch nor xgboost;
third-party models register with the decorator."""

from __future__ import annotations

import difflib
import importlib

from cwm_bench.model.base import CostModel

# name -> "module:Class"; imported on first use
_LAZY: dict[str, str] = {
    "random": "baselines.floors:RandomModel",
    "flops": "baselines.floors:FlopsModel",
    "ansor-xgb": "baselines.ansor_xgb:AnsorXGBModel",
    "ansor-xgb-rank": "baselines.ansor_xgb:AnsorXGBRankModel",
    "tenset-mlp": "baselines.tenset_mlp:TenSetMLPModel",
    "tlp": "baselines.tlp:TLPModel",
}
_LOADED: dict[str, type[CostModel]] = {}


class UnknownModelError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def register_model(name: str):
    """Class decorator: `@register_model("my-model") class MyModel(CostModel): ...`."""

    def decorate(cls: type[CostModel]) -> type[CostModel]:
        if not issubclass(cls, CostModel):
            raise TypeError(f"{cls.__name__} must subclass cwm_bench.model.CostModel")
        cls.name = name
        _LOADED[name] = cls
        return cls

    return decorate


def model_names() -> list[str]:
    return sorted(set(_LAZY) | set(_LOADED))


def model_class(name: str) -> type[CostModel]:
    if name in _LOADED:
        return _LOADED[name]
    if name not in _LAZY:
        close = difflib.get_close_matches(name, model_names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}.{hint} Valid models: {', '.join(model_names())}")
    module_name, _, class_name = _LAZY[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    _LOADED.setdefault(name, cls)
    cls.name = name
    return cls


def create_model(name: str, **config) -> CostModel:
    return model_class(name)(**config)
