"""Which cores measure and which build: the pipelined collector keeps them disjoint.

Measurement pinned to its own cores (TVM's thread pool sized to them) can overlap the next batch's
search and build on the other cores; whether that overlap disturbs timings is measured, per machine,
by `cwm-bench check-overlap` (`cwm_bench.measure.overlap_check`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class CorePlanError(ValueError):
    """A --measure-cores value this machine cannot honour."""


@dataclass(frozen=True)
class CorePlan:
    measure: tuple[int, ...]  # cores the measuring worker is pinned to (its thread count)
    build: tuple[int, ...]  # cores for search and builds while a batch is measured

    @property
    def text(self) -> str:
        return f"measuring on core(s) {_ranges(self.measure)}, searching and building on {_ranges(self.build)}"


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def parse_measure_cores(spec: str) -> tuple[int, ...] | int:
    """`"2"` -> 2 (a count: the last two usable cores); `"1,3"` / `"2-3"` -> those cores."""
    spec = spec.strip()
    if spec.isdigit():
        return int(spec)
    cores: set[int] = set()
    for part in spec.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise CorePlanError(f"--measure-cores {spec!r}: expected a count (2) or cores (1,3 or 2-3)")
        cores.update(range(int(low), int(high if dash else low) + 1))
    return tuple(sorted(cores))


def plan_cores(measure: tuple[int, ...] | int, usable: list[int] | None = None) -> CorePlan:
    """Split the usable cores: `measure` cores (or the last `measure` of them) measure, the rest build."""
    usable = usable if usable is not None else usable_cpus()
    if isinstance(measure, int):
        if not 1 <= measure < len(usable):
            raise CorePlanError(f"--measure-cores {measure}: this machine has {len(usable)} usable core(s); "
                                f"measuring needs at least 1 and building at least 1")
        chosen = tuple(usable[-measure:])
    else:
        chosen = tuple(sorted(set(measure)))
        missing = sorted(set(chosen) - set(usable))
        if missing:
            raise CorePlanError(f"--measure-cores: core(s) {_ranges(tuple(missing))} not usable here "
                                f"(usable: {_ranges(tuple(usable))})")
        if not chosen or len(chosen) >= len(usable):
            raise CorePlanError(f"--measure-cores {_ranges(chosen)}: leave at least one of "
                                f"{_ranges(tuple(usable))} for building")
    return CorePlan(measure=chosen, build=tuple(c for c in usable if c not in chosen))


def default_measure_cores(usable: list[int] | None = None) -> int:
    """Half the cores measure (at least one), the rest search and build."""
    usable = usable if usable is not None else usable_cpus()
    return max(1, len(usable) // 2)


def _ranges(cores: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in cores) if cores else "none"
