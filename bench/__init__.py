"""The benchmarks: scripts that measure and print medians and ratios side by side, and the
few helpers they share (golden.py, memory.py, live_compare.py). A package, not installed
with Toonstream: run a bench from the checkout's root as `python -m bench.NAME [options]`
(`python -m bench.engine --help`), which puts the root on the import path so the benches
import `streamer` and each other as `bench.NAME`."""
