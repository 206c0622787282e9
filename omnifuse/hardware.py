"""The machine a run or a benchmark ran on: CPU model and cores (imports nothing else from omnifuse)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def read_cpuinfo() -> str:
    """Linux's ``/proc/cpuinfo``, or "" where there is none to read."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name, from ``cpuinfo`` (a ``/proc/cpuinfo`` text; default: this machine's)."""
    for line in (read_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The CPU model and the cores this process may use (and the machine has)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count()
    return {"cpu": cpu_model(), "cores": cores, "cpu_count": os.cpu_count()}
