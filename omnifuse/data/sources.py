"""Where a data set's files are: locate them on disk, verify them, or download them from the official URL.

Lookup order (first hit wins): an explicit ``data_dir`` (``--data-dir``) → each folder in ``$OMNIFUSE_DATA``
(``os.pathsep``-separated) → the user cache (``$OMNIFUSE_CACHE`` or ``~/.cache/omnifuse``) → a download from the
official URL into the cache, checked against known sha256 sums → an :class:`OmnifuseError` saying which file to
put where. Downloads are off when ``OMNIFUSE_NO_DOWNLOAD=1``.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import http.client
import logging
import lzma
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnifuse.errors import OmnifuseError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One data set's distribution file, and the other names under which its contents count as present.

    ``sha256[0]`` is the official file's checksum; later entries are known lossless re-packs. ``members`` are paths
    (relative to an extracted folder such as ``cifar-10-batches-py/``) that must exist for the folder to verify.
    """

    dataset: str
    filename: str
    url: str
    sha256: tuple[str, ...]
    alternatives: tuple[str, ...] = ()
    subdir: str = ""
    description: str = ""
    members: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.filename, *self.alternatives)


def cache_dir() -> Path:
    """The user cache: ``$OMNIFUSE_CACHE``, else ``~/.cache/omnifuse``. Not created here."""
    env = os.environ.get("OMNIFUSE_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "omnifuse"


def data_roots(data_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """The folders searched for data files, in lookup order, without duplicates.

    Example: ``data_roots("data")`` → ``[Path("data"), *$OMNIFUSE_DATA, cache_dir()]``.
    """
    roots: list[Path] = []
    if data_dir is not None:
        given = [data_dir] if isinstance(data_dir, (str, os.PathLike)) else list(data_dir)
        roots += [Path(d).expanduser() for d in given if str(d)]
    for part in os.environ.get("OMNIFUSE_DATA", "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part.strip()).expanduser())
    roots.append(cache_dir())
    unique: list[Path] = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def find(source: Source, data_dir=None) -> Path | None:
    """The first existing copy of ``source`` under the data roots, or ``None``. Never downloads.

    In each root, looks at ``root/<name>`` and ``root/<subdir>/<name>`` for each of ``source.names``; a root that
    *is* such a file or folder (``--data-dir path/to/cifar-10-python.tar.gz``) counts as well.
    """
    for root in data_roots(data_dir):
        if root.name in source.names and root.exists():
            return root
        for name in source.names:
            for candidate in (root / name, root / source.subdir / name):
                if candidate.exists():
                    return candidate
    return None


def downloads_allowed(download: bool | None = None) -> bool:
    """``download`` if given, else true unless ``$OMNIFUSE_NO_DOWNLOAD`` is set to a true value."""
    if download is not None:
        return bool(download)
    return os.environ.get("OMNIFUSE_NO_DOWNLOAD", "").strip().lower() not in ("1", "true", "yes", "on")


def how_to_get(source: Source, data_dir=None) -> str:
    """The instructions printed when a data set is missing: what to fetch, from where, and where to put it."""
    roots = "\n".join(f"  - {root}" for root in data_roots(data_dir))
    subdir = f"{source.subdir}/" if source.subdir else ""
    others = f"These names count as well: {', '.join(source.alternatives)}. " if source.alternatives else ""
    return (
        f"Download '{source.filename}' from {source.url} and put it in one of the folders searched:\n"
        f"{roots}\n"
        f"either directly or in a '{subdir}' subfolder (e.g. <folder>/{subdir}{source.filename}). {others}"
        f"Point omnifuse at another folder with --data-dir DIR or OMNIFUSE_DATA=DIR "
        f"(several folders separated by '{os.pathsep}')."
    )


def locate(source: Source, data_dir=None, download: bool | None = None) -> Path:
    """The path of ``source``'s data, downloading it into the cache if needed and allowed.

    ``download=None`` means: allowed unless ``OMNIFUSE_NO_DOWNLOAD=1``. Raises :class:`OmnifuseError` with
    instructions when the data is neither present nor downloadable.
    """
    found = find(source, data_dir)
    if found is not None:
        return found
    if not downloads_allowed(download):
        raise OmnifuseError(
            f"Data set '{source.dataset}' not found and downloads are off (OMNIFUSE_NO_DOWNLOAD=1). "
            + how_to_get(source, data_dir)
        )
    dest = cache_dir() / source.subdir
    try:
        return _download(source, dest)
    except OmnifuseError as exc:
        raise OmnifuseError(f"{exc}\n" + how_to_get(source, data_dir)) from exc


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_DIGESTS: dict[tuple, str] = {}


def archive_fingerprint(path: str | os.PathLike) -> str:
    """``"sha256 <hex>"`` of a file, for keying a parsed cache by content: a byte changed with its mtime put back
    still changes it. Hashed once per process for a file whose size, mtime and ctime (which no one can set back)
    stay the same."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return f"sha256 {_DIGESTS[key]}"


def verify(source: Source, path: str | os.PathLike) -> tuple[bool, str]:
    """Whether ``path`` holds ``source``'s data, with a short message saying why (not).

    A file must have an accepted sha256 (the official one or a known lossless re-pack); a folder must contain
    ``source.members``.
    """
    path = Path(path)
    if path.is_dir():
        missing = [m for m in source.members if not (path / m).exists()]
        if missing:
            return False, f"folder lacks {', '.join(missing)}"
        return True, f"folder has all {len(source.members)} expected members" if source.members else "folder"
    if not path.is_file():
        return False, "not found"
    try:
        digest = sha256_file(path)
    except OSError as exc:
        return False, f"unreadable: {exc}"
    if digest not in source.sha256:
        return False, f"sha256 {digest} is not a known checksum of {source.filename}"
    kind = "official file" if digest == source.sha256[0] else "known lossless re-pack"
    return True, f"sha256 ok ({kind})"


def download(
    source: Source, dest_dir: str | os.PathLike, url: str | None = None, timeout: float = 60
) -> Path:
    """Download ``url`` (default ``source.url``) to ``dest_dir/source.filename``, checking size and sha256.

    The bytes go to a temporary file in ``dest_dir`` that is renamed into place only once verified, so an
    interrupted or corrupt download never sits under the final name.
    """
    return _download(source, Path(dest_dir), url=url, timeout=timeout)


def _download(source: Source, dest_dir: Path, url: str | None = None, timeout: float = 60) -> Path:
    url = url or source.url
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OmnifuseError(f"Cannot create the download folder {dest_dir}: {exc}") from exc
    final = dest_dir / source.filename
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{source.filename}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        expected_size = None
        log.info("Downloading %s to %s", url, final)
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    expected_size = int(length) if length and length.isdigit() else None
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
            except http.client.IncompleteRead as exc:
                received += len(exc.partial)
                raise OmnifuseError(
                    f"Download of {url} was cut short: expected {expected_size} bytes. "
                    f"Received: {received} bytes. Try again."
                ) from exc
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                raise OmnifuseError(f"Download of {url} failed after {received} bytes: {exc}") from exc
        if expected_size is not None and received != expected_size:
            raise OmnifuseError(
                f"Download of {url} was cut short: expected {expected_size} bytes (Content-Length). "
                f"Received: {received} bytes. Try again."
            )
        got = digest.hexdigest()
        if source.sha256 and got not in source.sha256:
            raise OmnifuseError(
                f"Download of {url} has the wrong checksum: expected sha256 "
                f"{' or '.join(source.sha256)}. Received: sha256 {got} ({received} bytes). "
                "The file may be truncated, corrupted or replaced upstream; it was not kept."
            )
        os.chmod(tmp, 0o644)  # mkstemp makes files private; data files are not secret
        os.replace(tmp, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)


def read_parsed_cache(cache_file: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays a loader saved under ``key`` (None when absent, stale or unreadable: the loader parses again).

    ``key`` is stored in the cache file and must match exactly; loaders put an archive's
    :func:`archive_fingerprint` (its sha256) in it, so a changed archive is parsed again whatever its mtime.
    """
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            return {name: npz[name] for name in npz.files if name != "key"}
    except Exception as exc:  # our own cache: anything wrong with it just means parsing again
        log.warning("Ignoring unreadable parsed cache %s (%s)", cache_file, exc)
        return None


def write_parsed_cache(cache_file: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Save a loader's parsed arrays atomically; a read-only or full cache only logs a warning."""
    tmp = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=f".{cache_file.name}.", suffix=".part")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, key=np.array(key), **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; a cache is not secret
        os.replace(tmp, cache_file)
        tmp = None
    except OSError as exc:  # a read-only or full cache must not stop loading
        log.warning("Could not write parsed cache %s (%s)", cache_file, exc)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def open_tar_stream(archive: Path) -> Iterator[tarfile.TarFile]:
    """``archive`` (a tar, plain or gzip / xz / bzip2 compressed) as a streaming ``tarfile`` for one pass.

    ``tarfile`` alone takes a header cut short for the end of the archive, so a download truncated at such a byte
    would load fewer members without an error. Here the decompressor is read to its end once the members have
    been read, and a compressed stream that stops early raises ``EOFError``.
    """
    with open(archive, "rb") as file:
        magic = file.read(6)
    if magic.startswith(b"\x1f\x8b"):
        opener = gzip.open
    elif magic.startswith(b"\xfd7zXZ\x00"):
        opener = lzma.open
    elif magic.startswith(b"BZh"):
        opener = bz2.open
    else:
        opener = open
    with opener(archive, "rb") as raw:
        with tarfile.open(fileobj=raw, mode="r|") as tar:
            yield tar
        while raw.read(1 << 20):  # the end-of-archive padding; the decompressor checks the stream's end
            pass
