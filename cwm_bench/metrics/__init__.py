"""Ranking metrics and the OGB-style `Evaluator`."""

from cwm_bench.metrics.evaluator import Evaluator, EvaluatorInputError
from cwm_bench.metrics.ranking import TASK_METRICS

__all__ = ["TASK_METRICS", "Evaluator", "EvaluatorInputError"]
