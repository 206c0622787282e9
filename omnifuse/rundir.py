"""The run directory's files: atomic writes, reading a run's meta, naming a new run.

Every file omnifuse writes is written to a temporary name beside it and renamed over it, so a kill never leaves a
half-written file (``os.replace`` is atomic on one file system). This module imports nothing from omnifuse but
the error type (a run's config is read by ``omnifuse.config.read_run_config``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omnifuse.errors import OmnifuseError

META = "meta.json"
CONFIG = "config.toml"


def temporary_path(path: Path) -> Path:
    """A hidden name beside ``path`` that keeps its suffix (``model.keras`` -> ``.model.tmp.keras``): Keras, h5py
    and ONNX Runtime read the suffix to decide the format."""
    path = Path(path)
    suffixes = "".join(path.suffixes)
    stem = path.name[: -len(suffixes)] if suffixes else path.name
    return path.with_name(f".{stem}.tmp{suffixes}")


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` to make the file at a temporary path beside ``path``, then rename it to ``path``.

    >>> atomic_write(run / "model.keras", model.save)
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_file():
            tmp.unlink()
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: str | Path, value: Any, default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``value`` as indented JSON (and a final newline) to ``path`` atomically; ``default`` as in
    :func:`json.dumps`."""
    return atomic_write_text(path, json.dumps(value, indent=2, default=default) + "\n")


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    """A run's ``meta.json`` (modalities, tasks, data sources, progress)."""
    path = Path(run_dir) / META
    if not path.is_file():
        raise OmnifuseError(f"Expected a run directory with {META}. Received: '{run_dir}' (no {META})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise OmnifuseError(
            f"Expected JSON in '{path}'. Received: a file that does not parse ({err})"
        ) from err


def free_run_dir(root: str | Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ``root/name-3``, ... : the first that does not exist yet (not made)."""
    root = Path(root)
    path, n = root / name, 1
    while path.exists():
        n += 1
        path = root / f"{name}-{n}"
    return path


def new_run_dir(root: str | Path, name: str) -> Path:
    """Make and return a new run directory under ``root`` named after ``name`` (see :func:`free_run_dir`)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    path = free_run_dir(root, name)
    path.mkdir()
    return path
