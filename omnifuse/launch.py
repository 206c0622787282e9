"""``omnifuse launch --workers N CONFIG``: N ``multi_worker`` training processes on 127.0.0.1 (see
omnifuse/distributed.py), their output echoed with a ``[worker i]`` prefix, all restarted on a failure when asked
to; they continue from their backups."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from omnifuse.errors import OmnifuseError
from omnifuse.rundir import free_run_dir


class WorkerFailed(OmnifuseError):
    """A launched worker exited with an error (``code``: its exit code, negative for a signal)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports on 127.0.0.1 that are free now."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _forward(stream, prefix: str, echo) -> None:
    for line in iter(stream.readline, ""):
        echo(prefix + line.rstrip("\n"))
    stream.close()


def _stop(procs: list[subprocess.Popen], grace: float = 3.0) -> None:
    # a worker's backups are written atomically, so it need not get the chance to finish anything
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(max(0.0, deadline - time.monotonic()))
        if p.poll() is None:
            p.kill()
            p.wait()


def launch(
    config: str,
    workers: int,
    overrides: list[str] | None = None,
    run_dir: str | Path | None = None,
    runs_root: str | Path = "runs",
    data_dir: str | None = None,
    max_restarts: int = 0,
    echo=print,
) -> Path:
    """Train ``config`` with ``workers`` worker processes on 127.0.0.1 (``multi_worker``); return the run directory.

    Each worker's output is echoed with a ``[worker i]`` prefix. If a worker fails, the others are stopped (they
    could not go on without it); with ``max_restarts`` left, all are started again and continue from their
    backups, otherwise :class:`WorkerFailed` is raised.

    >>> launch("cifar10-cnn", 2, ["train.epochs=2"])
    """
    from omnifuse.config import load_config

    if workers < 1:
        raise OmnifuseError(f"Expected --workers to be at least 1. Received: {workers}")
    overrides = list(overrides or [])
    cfg = load_config(config, overrides)  # a bad key fails here, once, not in every worker
    if run_dir is None:
        run_dir = free_run_dir(runs_root, cfg.name)
    run_dir = Path(run_dir)
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["PYTHONUNBUFFERED"] = "1"
    attempt = 0
    while True:
        addresses = ",".join(f"127.0.0.1:{p}" for p in free_ports(workers))
        procs, threads = [], []
        for i in range(workers):
            cmd = [sys.executable, "-m", "omnifuse.cli", "train", str(config)]
            for item in overrides:
                cmd += ["--set", item]
            cmd += ["--distribution", "multi_worker", "--workers", addresses, "--worker-index", str(i)]
            cmd += ["--run-dir", str(run_dir)]
            if data_dir:
                cmd += ["--data-dir", str(data_dir)]
            p = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
            )
            echo(f"[launch] worker {i} pid {p.pid} at {addresses.split(',')[i]}")
            t = threading.Thread(target=_forward, args=(p.stdout, f"[worker {i}] ", echo), daemon=True)
            t.start()
            procs.append(p)
            threads.append(t)
        failed = None
        try:
            while failed is None and any(p.poll() is None for p in procs):
                for i, p in enumerate(procs):
                    if p.poll() not in (None, 0):
                        failed = (i, p.returncode)
                        break
                time.sleep(0.2)
            if failed is None:
                failed = next(((i, p.returncode) for i, p in enumerate(procs) if p.returncode), None)
        finally:
            _stop(procs)
            for t in threads:
                t.join(timeout=5)
        if failed is None:
            echo(f"[launch] all {workers} workers finished; run directory: {run_dir}")
            return run_dir
        index, code = failed
        if attempt >= max_restarts:
            raise WorkerFailed(
                f"Worker {index} exited with code {code}; the other workers were stopped. Starting the same "
                f"launch again with --run-dir {run_dir} continues from the workers' backups.",
                code,
            )
        attempt += 1
        echo(
            f"[launch] worker {index} exited with code {code}; restarting all {workers} workers "
            f"(restart {attempt} of {max_restarts}); they continue from their backups"
        )
