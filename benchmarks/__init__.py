"""The benchmark harness (benchmarks/run); not part of the package, never run by the test suite."""
