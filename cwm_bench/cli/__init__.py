"""`cwm-bench`: collect schedule traces with measured latencies into Parquet, and everything after.

One module per stage registers its commands on `main`.
"""

from __future__ import annotations

import click

from cwm_bench import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cwm-bench")
def main() -> None:
    """CWM-Bench: a dataset and benchmark for learned tensor-program cost models.

    \b
    The flow, stage by stage:
      cwm-bench workloads list --suite mini                      # what can be collected
      cwm-bench collect --workloads mini --per-task 64 --out data/mini
      cwm-bench validate data/mini
      cwm-bench release data/mini --out release/mini --name ORG/cwm-bench-mini
      cwm-bench train --model ansor-xgb --data release/mini --split within_task --out ckpt/xgb
      cwm-bench evaluate --model ckpt/xgb --data release/mini --split within_task --json xgb.json
      cwm-bench report xgb.json --png opa.png
    """


# Registers the commands (imported for their side effect, after `main` exists).
from cwm_bench.cli import collection, cuda, data, leaderboard, models, tuning  # noqa: E402, F401
