"""Live tuning: contenders in MetaSchedule's search, run logs, reports, end to end against PyTorch."""
