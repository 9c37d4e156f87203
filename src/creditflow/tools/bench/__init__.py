"""Benchmarks behind `creditflow bench ...`: each prints JSON and compares with a bound or peer measured
in the same run (these machines are noisy; ratios and medians, not single times)."""
