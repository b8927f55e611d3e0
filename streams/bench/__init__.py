"""Benchmarks, run with `gapstream bench ...`: each reports the pipeline next to the raw client
rate measured in the same run on the same broker, because this machine is shared and noisy."""
