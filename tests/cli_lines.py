"""Several command lines through ``omnifuse.cli.main`` (what the installed ``omnifuse`` command runs) in one fresh
interpreter, one after the other.

A new process costs seconds of imports, and a mistake on the command line is answered before TensorFlow loads, so
one process answers many of them. For each command line: its exit code (``SystemExit``'s, as the process would
exit with it; an uncaught exception is exit 1 with its traceback on stderr), what it wrote to stdout and stderr,
the CPU seconds it took (the imports it was the first to need included), whether TensorFlow or Keras was loaded
after it, and ``OMNIFUSE_VERBOSE`` after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_RUNNER = r"""
import contextlib, io, json, os, sys, time, traceback

results = []
for argv in json.load(sys.stdin):
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = ["omnifuse", *argv]
    start = time.process_time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            from omnifuse.cli import main

            main()
        except SystemExit as exc:
            code = exc.code
            if isinstance(code, str):  # the interpreter prints it and exits 1
                print(code, file=sys.stderr)
                code = 1
            code = code or 0
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append({
        "argv": argv,
        "code": code,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
        "cpu": time.process_time() - start,
        "tensorflow": "tensorflow" in sys.modules,
        "keras": "keras" in sys.modules,
        "verbose": os.environ.get("OMNIFUSE_VERBOSE"),
    })
sys.stdout.write(json.dumps(results))
"""


def run_lines(lines: list[list[str]], env: dict[str, str] | None = None) -> dict[tuple[str, ...], dict]:
    """Run ``lines`` (each the arguments after ``omnifuse``) in order in one fresh interpreter with ``env`` (default
    this one's, with the checkout first on ``PYTHONPATH``); the result of each, keyed by its arguments."""
    if env is None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input=json.dumps(lines),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return {tuple(r["argv"]): r for r in json.loads(done.stdout)}
