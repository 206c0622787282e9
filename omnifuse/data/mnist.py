"""MNIST from the official IDX files (``train-images-idx3-ubyte.gz`` etc.), gzipped or not.

IDX: two zero bytes, a type code (``0x08`` = unsigned byte), the number of dimensions, then one big-endian int32
per dimension, then the values in row-major order. Images are ``(N, 28, 28)`` uint8 (0 = background), labels
``(N,)`` uint8 digits. The header is parsed here with numpy, so a damaged or mismatched file fails with a message
naming it rather than with a reshape error deep inside.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from omnifuse.data import Dataset, Split
from omnifuse.data.sources import Source, locate
from omnifuse.errors import OmnifuseError

DIGITS = [str(d) for d in range(10)]
_URL = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/"  # the mirror TensorFlow uses; same files as LeCun's
)
_DESCRIPTION = "MNIST handwritten digits, 28x28 grayscale: 60,000 train / 10,000 test"


def _source(stem: str, official_sha256: str, mirror_sha256: str) -> Source:
    return Source(
        dataset="mnist",
        filename=f"{stem}.gz",
        url=f"{_URL}{stem}.gz",
        sha256=(
            official_sha256,
            mirror_sha256,
        ),  # official .gz; lossless re-gzip (same IDX bytes, gzip -9 -n)
        # Uncompressed copies: the official name, and the name Windows extraction tools tend to give.
        alternatives=(stem, stem.replace("-idx", ".idx")),
        subdir="mnist",
        description=_DESCRIPTION,
    )


TRAIN_IMAGES = _source(
    "train-images-idx3-ubyte",
    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "db8f937d487057fb14a9f0fbe97f0bc8d311ab41b750d41e1ff37c43b9e55e19",
)
TRAIN_LABELS = _source(
    "train-labels-idx1-ubyte",
    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "51fc562b6747b666fbf6e84ce29d43c3cb5f9c388c664d43b33f02095313405a",
)
TEST_IMAGES = _source(
    "t10k-images-idx3-ubyte",
    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "cfeddb84311ecf044fc6a5b0f6ee8a24d265d4e83e388400186eb114082f4209",
)
TEST_LABELS = _source(
    "t10k-labels-idx1-ubyte",
    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "e41c74e484045d39b462a7790a4af51301bd9b0b24f0154798d713ec68c45920",
)
SOURCES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
SOURCE = TRAIN_IMAGES  # the one listed in the catalog; load() locates all four

# IDX type code -> numpy dtype (big-endian, as the format stores multi-byte values).
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load(data_dir=None, download: bool | None = None) -> Dataset:
    """MNIST as arrays: splits ``train`` (60,000) and ``test`` (10,000), ``image`` uint8 (N, 28, 28, 1).

    Task ``digit`` (classes "0".."9"); ``ids`` are positions in the official order. The four files are looked up
    independently (each may be gzipped or not).
    Example: ``load(data_dir="data")["test"].labels["digit"][:3]`` → ``[7, 2, 1]``.
    """
    paths = [locate(source, data_dir, download) for source in SOURCES]
    splits = {
        "train": _split(paths[0], paths[1]),
        "test": _split(paths[2], paths[3]),
    }
    return Dataset(
        name="mnist",
        splits=splits,
        tasks={"digit": list(DIGITS)},
        modalities={"image": "image"},
        source=str(paths[0].parent),
    )


def _split(images_path: Path, labels_path: Path) -> Split:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise OmnifuseError(
            f"Expected an IDX file of uint8 images (N, rows, cols). Received: '{images_path}' holding "
            f"{images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise OmnifuseError(
            f"Expected an IDX file of uint8 labels (N,). Received: '{labels_path}' holding {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise OmnifuseError(
            f"Expected as many labels as images. Received: {len(images)} images in '{images_path}' and "
            f"{len(labels)} labels in '{labels_path}'"
        )
    if labels.size and labels.max() > 9:
        raise OmnifuseError(
            f"Expected digit labels 0-9. Received: a label {int(labels.max())} in '{labels_path}'"
        )
    return Split(
        inputs={"image": np.ascontiguousarray(images[..., None])},
        labels={"digit": labels.astype(np.int64)},
        ids=np.arange(len(labels), dtype=np.int64),
    )


def read_idx(path: str | Path) -> np.ndarray:
    """The array in an IDX file (gzipped or not, detected from its first bytes), in native byte order.

    Example: ``read_idx("t10k-labels-idx1-ubyte.gz").shape == (10000,)``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise OmnifuseError(
            f"Expected a readable (optionally gzipped) IDX file. Received: '{path}', which cannot be read or "
            f"decompressed ({type(exc).__name__}: {exc}); it may be truncated"
        ) from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES or data[3] == 0:
        raise OmnifuseError(
            f"Expected an IDX file (magic bytes 00 00 <type 08-0E> <ndim>, e.g. 00 00 08 03 for images). "
            f"Received: '{path}' starting with {data[:4].hex(' ') or 'nothing'}"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise OmnifuseError(
            f"Expected a {header}-byte IDX header in '{path}'. Received: {len(data)} bytes in all"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise OmnifuseError(
            f"Expected {expected} bytes in '{path}' (header + {'x'.join(map(str, shape))} values of "
            f"{dtype.itemsize} byte(s)). Received: {len(data)} bytes; the file is truncated or not this IDX file"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
