"""Benchmarks: ``omnifuse bench NAME`` runs a preset or a suite of ``suites.toml`` over seeds, each run in a fresh
process (:mod:`~omnifuse.bench.harness`), writes one JSON record per run (:mod:`~omnifuse.bench.recorder`) and
regenerates ``benchmarks/RESULTS.md`` and the README's table (:mod:`~omnifuse.bench.report`).

>>> run_bench("cifar10-fast", seeds=3, compare="cifar10_cnn")   # as `omnifuse bench cifar10-fast --seeds 3 ...`
"""

from omnifuse.bench.harness import parse_thresholds, run_bench, run_serve
from omnifuse.bench.recorder import EpochRecorder, finish_reference, reference_parser
from omnifuse.bench.report import update_results

__all__ = [
    "EpochRecorder",
    "finish_reference",
    "parse_thresholds",
    "reference_parser",
    "run_bench",
    "run_serve",
    "update_results",
]
