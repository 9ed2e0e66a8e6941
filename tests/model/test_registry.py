"""The model registry: helpful errors, lazy imports, third-party registration."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cwm_bench.model import CostModel, create_model, model_names, register_model
from cwm_bench.model.registry import UnknownModelError


def test_typo_suggests_the_close_name_and_lists_all():
    with pytest.raises(UnknownModelError) as info:
        create_model("ansor-xbg")
    message = str(info.value)
    assert "Did you mean 'ansor-xgb'?" in message
    for name in ("random", "flops", "ansor-xgb", "ansor-xgb-rank"):
        assert name in message


def test_listing_and_importing_the_registry_imports_no_ml_framework():
    code = ("import sys, cwm_bench.model as m; m.model_names(); m.create_model('random'); "
            "print('xgboost' in sys.modules, 'torch' in sys.modules, 'tvm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_third_party_models_register_with_the_decorator():
    @register_model("test-constant")
    class Constant(CostModel):
        def fit(self, train, progress=True):
            pass

        def score(self, records):
            return [0.0] * len(records)

    try:
        assert "test-constant" in model_names()
        assert isinstance(create_model("test-constant", k=1), Constant)
        with pytest.raises(TypeError, match="must subclass"):
            register_model("test-bad")(object)
    finally:
        from cwm_bench.model import registry

        registry._LOADED.pop("test-constant", None)
