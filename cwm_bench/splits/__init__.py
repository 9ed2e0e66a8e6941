"""Train/test split assignment for releases: pure, seeded, stored as columns of the records table."""

from cwm_bench.splits.assign import (
    HOLDOUT_FAMILIES,
    HOLDOUT_NETWORKS,
    SPLIT_COLUMNS,
    SPLIT_SCHEMES,
    WITHIN_TASK_TEST_FRACTION,
    assign_splits,
)

__all__ = ["HOLDOUT_FAMILIES", "HOLDOUT_NETWORKS", "SPLIT_COLUMNS", "SPLIT_SCHEMES", "WITHIN_TASK_TEST_FRACTION",
           "assign_splits"]
