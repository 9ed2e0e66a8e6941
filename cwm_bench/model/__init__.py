"""Cost models: the contract (`CostModel`), the registry, and the input view (`Records`)."""

from cwm_bench.model.base import CheckpointMismatchError, CostModel, load_checkpoint
from cwm_bench.model.records import Records, load_records
from cwm_bench.model.registry import create_model, model_names, register_model

__all__ = ["CheckpointMismatchError", "CostModel", "Records", "create_model", "load_checkpoint", "load_records",
           "model_names", "register_model"]
