"""Where cwm-bench keeps machine-local state: overlap verdicts, the build-only CUDA driver stub."""

from __future__ import annotations

import os

CACHE_ENV = "CWM_BENCH_CACHE"


def cache_root() -> str:
    """$CWM_BENCH_CACHE, else ~/.cache/cwm-bench."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "cwm-bench")
