"""Importing TVM the way the collector needs it: fast, and only what the target needs.

`TuneContext` imports *every* tensor-intrinsic family on construction (CUDA's alone took 25 s here);
an LLVM target only needs the x86 ones. Design spaces are identical either way (checked: same traces
up to random decisions). Every process that builds design spaces calls `load_tensor_intrinsics` first.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

_INTRINSIC_PACKAGE = "tvm.s_tir.tensor_intrin"
_FAMILIES_BY_TARGET = {"llvm": ("x86",), "cuda": ("cuda",)}


def load_tensor_intrinsics(target_kind: str) -> None:
    """Register only the tensor intrinsics `target_kind` can use (idempotent)."""
    families = _FAMILIES_BY_TARGET.get(target_kind)
    if families is None:
        importlib.import_module(_INTRINSIC_PACKAGE)  # unknown target: register everything
        return
    package = sys.modules.get(_INTRINSIC_PACKAGE)
    if package is None:
        import tvm  # noqa: F401  (the parent packages must exist before the stub)

        spec = importlib.util.find_spec(_INTRINSIC_PACKAGE)
        assert spec is not None
        # An empty package object with the real __path__: `import tvm.s_tir.tensor_intrin` in
        # TuneContext becomes a no-op, while submodules still import from the real files.
        package = importlib.util.module_from_spec(spec)
        sys.modules[_INTRINSIC_PACKAGE] = package
    for family in families:
        importlib.import_module(f"{_INTRINSIC_PACKAGE}.{family}")


def structural_hash_hex(obj) -> str:
    """A stable 16-hex-digit id for an IRModule/PrimFunc (TVM's structural hash)."""
    import tvm_ffi

    return f"{tvm_ffi.structural_hash(obj) & 0xFFFFFFFFFFFFFFFF:016x}"
