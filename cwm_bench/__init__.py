"""CWM-Bench: a dataset and benchmark for learned tensor-program cost models."""

__version__ = "0.1.0"
