"""Free Spoken Digit Dataset (FSDD): ``recordings/<digit>_<speaker>_<index>.wav``, as a folder or a tar archive.

3,000 recordings of the spoken digits 0-9 (6 speakers x 10 digits x 50 takes in the 2024 snapshot), 8 kHz mono.
The official train/test split is by take: indices 0-4 of every speaker and digit are test, the rest train. The
``loso:<speaker>`` splits hold one speaker out instead (leave-one-speaker-out), which is the harder, honest test of
whether a model generalises to a new voice.

Decoding 3,000 WAVs out of an ``.xz`` archive takes seconds, so the decoded waveforms are cached as an ``.npz`` in
``cache_dir()/parsed/`` and reused while the source (path, size, modification time) and the requested sample rate
and length stay the same.
"""

from __future__ import annotations

import hashlib
import logging
import lzma
import os
import re
import tarfile
import zlib
from pathlib import Path

import numpy as np

from omnifuse.data import Dataset, Split
from omnifuse.data.sources import (
    Source,
    archive_fingerprint,
    cache_dir,
    locate,
    open_tar_stream,
    read_parsed_cache,
    write_parsed_cache,
)
from omnifuse.data.wav import decode_wav
from omnifuse.errors import OmnifuseError

log = logging.getLogger(__name__)

FOLDER = "recordings"
DIGITS = [str(d) for d in range(10)]
TEST_INDICES = range(0, 5)  # the official test takes
_NAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$", re.IGNORECASE)
_CACHE_VERSION = 1  # bump when the cached layout or decoding rules change

SOURCE = Source(
    dataset="fsdd",
    filename="fsdd_recordings.tar.xz",
    # The data set is distributed as its git repository; this is the tarball of the commit the mirror was built
    # from. Its sha256 is not known offline, so only the archive of recordings/ below verifies.
    url="https://github.com/Jakobovski/free-spoken-digit-dataset/archive/26eb9aaf76e81b692f806f9140c2d2777410d7a1.tar.gz",
    sha256=(
        "a9bc9ac34547cef3df98a87bff22f0744de5ce0273f6734fb7a85668164c1cf9",
    ),  # recordings/ at that commit, xz
    alternatives=("fsdd_recordings.tar.gz", "free-spoken-digit-dataset", FOLDER),
    subdir="fsdd",
    description="Free Spoken Digit Dataset: 3,000 8 kHz recordings of digits 0-9 by 6 speakers (2,700 / 300)",
    members=(),
)


# the data-config keys load() reads -> its argument names (the catalog passes these; others keep their defaults)
OPTIONS = {"split": "split", "sample_rate": "sample_rate", "num_samples": "num_samples"}


def load(
    data_dir=None,
    download: bool | None = None,
    split: str = "official",
    sample_rate: int = 8000,
    num_samples: int = 8000,
) -> Dataset:
    """FSDD as arrays: splits ``train`` and ``test``, ``audio`` float32 (N, num_samples) at ``sample_rate`` Hz.

    ``split="official"``: test = takes 0-4 of every speaker and digit (300), train = the rest (2,700).
    ``split="loso:<speaker>"``: test = that speaker's recordings, train = everyone else's.
    Task ``digit`` (classes "0".."9"); ``ids`` are file stems like ``"7_george_12"``; ``extra["speaker"]`` (str)
    and ``extra["index"]`` (int, the take). Samples are ordered by digit, speaker, then take.
    Example: ``load(data_dir="data", split="loso:theo")["test"].extra["speaker"][0] == "theo"``.
    """
    arrays, path = _load_all(data_dir, download, sample_rate, num_samples)
    test = _test_mask(arrays, split)
    ids = arrays["ids"]
    full = Split(
        inputs={"audio": arrays["audio"]},
        labels={"digit": arrays["digit"]},
        ids=ids,
        extra={"speaker": arrays["speaker"], "index": arrays["index"]},
    )
    return Dataset(
        name="fsdd",
        splits={"train": full.take(np.flatnonzero(~test)), "test": full.take(np.flatnonzero(test))},
        tasks={"digit": list(DIGITS)},
        modalities={"audio": "audio"},
        source=str(path),
    )


def speakers(dataset: Dataset) -> list[str]:
    """The speakers in ``dataset`` (any split), sorted; e.g. the valid ``loso:<speaker>`` splits."""
    found: set[str] = set()
    for split in dataset.splits.values():
        if "speaker" in split.extra:
            found.update(str(s) for s in split.extra["speaker"])
    return sorted(found)


def _test_mask(arrays: dict[str, np.ndarray], split: str) -> np.ndarray:
    if split == "official":
        return np.isin(arrays["index"], np.asarray(TEST_INDICES))
    if isinstance(split, str) and split.startswith("loso:"):
        speaker = split[len("loso:") :]
        known = sorted(set(arrays["speaker"].tolist()))
        if speaker not in known:
            raise OmnifuseError(
                f"Expected split 'loso:<speaker>' with one of the speakers {', '.join(known)}. Received: {split!r}"
            )
        return arrays["speaker"] == speaker
    raise OmnifuseError(f"Expected split 'official' or 'loso:<speaker>'. Received: {split!r}")


def _load_all(data_dir, download, sample_rate: int, num_samples: int) -> tuple[dict[str, np.ndarray], Path]:
    """Every recording, decoded (from the parsed cache when it is current), and the path they came from."""
    for name, value in (("sample_rate", sample_rate), ("num_samples", num_samples)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise OmnifuseError(f"Expected {name} to be a positive integer. Received: {value!r}")
    path = locate(SOURCE, data_dir, download)
    key = _cache_key(path, sample_rate, num_samples)
    cache_file = cache_dir() / "parsed" / f"fsdd-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    arrays = read_parsed_cache(cache_file, key)
    if arrays is None:
        log.info("Decoding %s (cached afterwards in %s)", path, cache_file)
        wavs = _read_folder(path) if path.is_dir() else _read_archive(path)
        arrays = _to_arrays(wavs, path, sample_rate, num_samples)
        write_parsed_cache(cache_file, key, arrays)
    return arrays, path


def _recordings_dir(path: Path) -> Path:
    """``path/recordings`` when there is one (a clone of the repository), else ``path`` itself."""
    return path / FOLDER if (path / FOLDER).is_dir() else path


def _wav_files(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        return [
            e
            for e in entries
            if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(".wav")
        ]


def _read_folder(path: Path) -> list[tuple[str, str, bytes]]:
    """``(file name, where, bytes)`` for every WAV in the recordings folder."""
    folder = _recordings_dir(path)
    wavs = []
    for entry in _wav_files(folder):
        try:
            wavs.append((entry.name, f"'{entry.path}'", Path(entry.path).read_bytes()))
        except OSError as exc:
            raise OmnifuseError(f"Cannot read '{entry.path}': {exc.strerror or exc}") from exc
    return wavs


def _read_archive(archive: Path) -> list[tuple[str, str, bytes]]:
    """WAVs directly inside a ``recordings/`` folder at any depth (or at the top), read in one streaming pass."""
    wavs = []
    try:
        with open_tar_stream(archive) as tar:
            for member in tar:
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if not member.isfile() or not parts or parts[-1].startswith("."):
                    continue
                if not parts[-1].lower().endswith(".wav") or (len(parts) > 1 and parts[-2] != FOLDER):
                    continue
                wavs.append((parts[-1], f"'{archive}:{member.name}'", tar.extractfile(member).read()))
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise OmnifuseError(
            f"Expected a complete tar archive of {FOLDER}/*.wav ({SOURCE.filename}). Received: '{archive}', which "
            f"cannot be read ({type(exc).__name__}: {exc}); it may be truncated or not a tar file"
        ) from exc
    return wavs


def _to_arrays(wavs: list[tuple[str, str, bytes]], path: Path, sample_rate: int, num_samples: int) -> dict:
    if not wavs:
        raise OmnifuseError(
            f"Expected FSDD recordings {FOLDER}/<digit>_<speaker>_<index>.wav in '{path}'. Received: no WAV files"
        )
    rows = []
    for filename, where, data in wavs:
        match = _NAME.match(filename)
        if not match:
            raise OmnifuseError(
                f"Expected FSDD recordings named <digit>_<speaker>_<index>.wav (e.g. 7_george_12.wav). "
                f"Received: {where}"
            )
        digit, speaker, index = int(match.group(1)), match.group(2), int(match.group(3))
        rows.append((digit, speaker, index, filename[: -len(".wav")], where, data))
    rows.sort(key=lambda r: r[:3])
    for a, b in zip(rows, rows[1:]):
        if a[:3] == b[:3]:
            raise OmnifuseError(
                f"Expected one recording per digit, speaker and take. Received: {a[4]} and {b[4]}"
            )
    audio = np.empty((len(rows), num_samples), dtype=np.float32)
    for i, row in enumerate(rows):
        try:
            audio[i] = decode_wav(row[5], sample_rate, num_samples)
        except OmnifuseError as exc:  # decode_wav only saw bytes: say which file they were
            raise OmnifuseError(str(exc).replace("<bytes>", row[4])) from exc
    return {
        "audio": audio,
        "digit": np.array([r[0] for r in rows], dtype=np.int64),
        "speaker": np.array([r[1] for r in rows], dtype=str),
        "index": np.array([r[2] for r in rows], dtype=np.int64),
        "ids": np.array([r[3] for r in rows], dtype=str),
    }


def _cache_key(path: Path, sample_rate: int, num_samples: int) -> str:
    """Changes whenever the data may have: the archive's sha256, or every WAV's for a folder."""
    if path.is_dir():
        stats = sorted(
            (e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in _wav_files(_recordings_dir(path))
        )
        fingerprint = f"folder {hashlib.sha256(repr(stats).encode()).hexdigest()}"
    else:
        fingerprint = f"file {archive_fingerprint(path)}"
    return f"omnifuse fsdd v{_CACHE_VERSION} {path.resolve()} {fingerprint} rate={sample_rate} length={num_samples}"
