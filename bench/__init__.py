"""GPU benchmarks of the workbench; ``python -m bench.run`` writes docs/PERFORMANCE.md's section."""
