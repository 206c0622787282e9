"""Where the test suite's CPU goes: a pytest plugin that appends, per test, the CPU seconds of the worker (``self``)
and of the processes it started (``children``) and the wall seconds, and per in-process omnifuse training its CPU
seconds, as JSON lines; ``--summary`` prints them per file.

    PYTHONPATH=benchmarks/experiments SUITE_CPU_OUT=/tmp/suite.jsonl python -m pytest -q -n 2 --dist loadfile -p suite_cpu
    python benchmarks/experiments/suite_cpu.py --summary /tmp/suite.jsonl
"""

from __future__ import annotations

import collections
import json
import os
import resource
import sys
import time

import pytest

OUT = os.environ.get("SUITE_CPU_OUT", "suite_cpu.jsonl")


def _cpu() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _write(record: dict) -> None:
    with open(OUT, "a") as f:  # one short line per write: the two workers' lines do not interleave
        f.write(json.dumps(record) + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    (own, children), wall = _cpu(), time.perf_counter()
    yield
    own2, children2 = _cpu()
    _write(
        {
            "test": item.nodeid,
            "self": round(own2 - own, 2),
            "children": round(children2 - children, 2),
            "wall": round(time.perf_counter() - wall, 2),
        }
    )


def pytest_configure(config):
    from omnifuse import training

    train = training._train

    def counted(run, *args, **kwargs):
        own = _cpu()[0]
        try:
            return train(run, *args, **kwargs)
        finally:
            test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
            _write({"training": test, "run": run.cfg.name, "cpu": round(_cpu()[0] - own, 2)})

    training._train = counted


def summary(path: str) -> None:
    tests, trainings = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0]), collections.Counter()
    for line in open(path):
        r = json.loads(line)
        if "training" in r:
            trainings[r["training"].split("::")[0]] += r["cpu"]
            continue
        row = tests[r["test"].split("::")[0]]
        row[0] += 1
        row[1] += r["self"]
        row[2] += r["children"]
        row[3] += r["wall"]
    print(
        "| file | tests | CPU s (own) | CPU s (processes it started) | of which in-process trainings | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    total = [0, 0.0, 0.0, 0.0]
    for name, (n, own, children, wall) in sorted(tests.items(), key=lambda kv: -(kv[1][1] + kv[1][2])):
        print(f"| {name} | {n} | {own:.1f} | {children:.1f} | {trainings[name]:.1f} | {wall:.1f} |")
        total = [total[0] + n, total[1] + own, total[2] + children, total[3] + wall]
    print(
        f"| all | {total[0]} | {total[1]:.1f} | {total[2]:.1f} | {sum(trainings.values()):.1f} | {total[3]:.1f} |"
    )


if __name__ == "__main__" and sys.argv[1:2] == ["--summary"]:
    summary(sys.argv[2])
