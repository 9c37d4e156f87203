"""Outside the runtime core: the demo, the benchmarks and the simulators behind creditflow demo, bench and simulate."""
