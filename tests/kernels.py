"""Real misbehaving kernels for isolation tests: TIR that aborts, hangs, or computes the wrong thing."""

from __future__ import annotations


def aborting_mod():
    """Calls libc abort(): the measuring process dies with SIGABRT."""
    import tvm
    from tvm.script import tirx as T

    @T.prim_func
    def main(A: T.Buffer((64, 64), "float32"), B: T.Buffer((64, 64), "float32"),
             C: T.Buffer((64, 64), "float32")):
        T.evaluate(T.call_extern("int32", "abort"))

    return tvm.IRModule({"main": main})


def sleeping_mod(seconds: int = 1000):
    """Calls libc sleep(): the kernel never returns within any sane timeout."""
    import tvm
    from tvm.script import tirx as T

    @T.prim_func
    def main(A: T.Buffer((64, 64), "float32"), B: T.Buffer((64, 64), "float32"),
             C: T.Buffer((64, 64), "float32")):
        T.evaluate(T.call_extern("int32", "sleep", seconds))

    return tvm.IRModule({"main": main})


def off_by_one_matmul_mod():
    """A 64x64x64 matmul that adds 1 to every output: runs fine, answers wrong."""
    import tvm
    from tvm.script import tirx as T

    @T.prim_func
    def main(A: T.Buffer((64, 64), "float32"), B: T.Buffer((64, 64), "float32"),
             C: T.Buffer((64, 64), "float32")):
        for i, j in T.grid(64, 64):
            C[i, j] = T.float32(1)
            for k in range(64):
                C[i, j] = C[i, j] + A[i, k] * B[k, j]

    return tvm.IRModule({"main": main})
