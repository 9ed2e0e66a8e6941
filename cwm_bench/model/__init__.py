"""Cost models: the contract (`CostModel`), the registry, and the sealed input seam (`Records`)."""

from cwm_bench.model.base import CheckpointError, CheckpointMismatchError, CostModel, load_checkpoint
from cwm_bench.model.records import ALL_INPUTS, INPUT_GROUPS, Records, seal
from cwm_bench.model.registry import create_model, include, model_names, register_model
from cwm_bench.model.split_side import SplitSide, load_records, load_side

__all__ = ["ALL_INPUTS", "INPUT_GROUPS", "CheckpointError", "CheckpointMismatchError", "CostModel", "Records",
           "SplitSide", "create_model", "include", "load_checkpoint", "load_records", "load_side", "model_names",
           "register_model", "seal"]
