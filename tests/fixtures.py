"""Small data sets written in the real distribution formats, for tests (``from fixtures import write_cifar10``).

The contents are learnable (a tiny model beats chance on them) and deterministic given the seed, and the helpers
that generate them are public so tests can compare what a loader returns with what was written.
"""

from __future__ import annotations

import gzip
import io
import lzma
import struct
import tarfile
from pathlib import Path

import numpy as np

CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_CIFAR10_COLOURS = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [128, 128, 0],
        [0, 0, 128],
    ],
    dtype=np.float64,
)

# ---------------------------------------------------------------------------------------------------- CIFAR-10


def cifar10_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 32, 32, 3) images: class k is a colour plus stripes at angle 18°·k, with noise."""
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64)
    images = np.empty((len(labels), 32, 32, 3), dtype=np.uint8)
    for i, k in enumerate(labels):
        angle = np.pi * k / 10
        stripes = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 0.8)[..., None]
        image = 0.7 * _CIFAR10_COLOURS[k] + 50 * stripes + rng.normal(0, 20, (32, 32, 3))
        images[i] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return images


def cifar10_batches(n_per_batch: int = 20, n_test: int = 40, seed: int = 0) -> dict[str, dict]:
    """The contents of each batch file, as the official pickles hold them (bytes keys, rows of 1024 R, G, B).

    Keys: ``data_batch_1``..``data_batch_5``, ``test_batch``, ``batches.meta``.
    """
    rng = np.random.default_rng(seed)
    batches: dict[str, dict] = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for index, name in enumerate(names):
        n = n_test if name == "test_batch" else n_per_batch
        labels = rng.permutation(np.arange(n) % 10)
        images = cifar10_images(labels, rng)
        rows = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(n, 3072))
        label = (
            b"testing batch 1 of 1" if name == "test_batch" else f"training batch {index + 1} of 5".encode()
        )
        batches[name] = {
            b"batch_label": label,
            b"labels": [int(k) for k in labels],
            b"data": rows,
            b"filenames": [f"{i}_{CIFAR10_LABELS[k]}.png".encode() for i, k in enumerate(labels)],
        }
    batches["batches.meta"] = {
        b"label_names": [name.encode() for name in CIFAR10_LABELS],
        b"num_cases_per_batch": n_per_batch,
        b"num_vis": 3072,
    }
    return batches


def py2_pickle(obj) -> bytes:
    """``obj`` pickled the way Python 2 + numpy wrote the official CIFAR-10 files (protocol 2, BINSTRING bytes,
    ``numpy.core.multiarray._reconstruct``). Handles dict, list, bytes, int and 2-D uint8 arrays."""
    out = bytearray(b"\x80\x02")
    _emit(out, obj)
    out += b"."
    return bytes(out)


def _emit(out: bytearray, obj) -> None:
    if isinstance(obj, dict):
        out += b"}("
        for key, value in obj.items():
            _emit(out, key)
            _emit(out, value)
        out += b"u"
    elif isinstance(obj, list):
        out += b"]("
        for item in obj:
            _emit(out, item)
        out += b"e"
    elif isinstance(obj, bytes):
        out += (b"U" + bytes([len(obj)])) if len(obj) < 256 else (b"T" + struct.pack("<i", len(obj)))
        out += obj
    elif isinstance(obj, int):
        if 0 <= obj < 256:
            out += b"K" + bytes([obj])
        elif 0 <= obj < 65536:
            out += b"M" + struct.pack("<H", obj)
        else:
            out += b"J" + struct.pack("<i", obj)
    elif isinstance(obj, np.ndarray) and obj.dtype == np.uint8 and obj.ndim == 2:
        out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
        out += b"(K\x01"
        _emit(out, obj.shape[0])
        _emit(out, obj.shape[1])
        out += b"\x86"  # TUPLE2: the shape
        out += b"cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R"
        out += b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        out += b"\x89"  # not Fortran order
        _emit(out, np.ascontiguousarray(obj).tobytes())
        out += b"tb"
    else:
        raise TypeError(f"py2_pickle cannot write {type(obj).__name__}")


def write_cifar10(
    root: Path, n_per_batch: int = 20, n_test: int = 40, seed: int = 0, archive: bool = True
) -> Path:
    """Write ``root/cifar-10-python.tar.gz`` (or the extracted ``root/cifar-10-batches-py/``); return its path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = {
        name: py2_pickle(content) for name, content in cifar10_batches(n_per_batch, n_test, seed).items()
    }
    if not archive:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return folder
    path = root / "cifar-10-python.tar.gz"
    entries = {"cifar-10-batches-py": None} | {f"cifar-10-batches-py/{n}": files[n] for n in sorted(files)}
    path.write_bytes(tar_bytes(entries, "gz"))
    return path


# ---------------------------------------------------------------------------------------------------------- IMDb

_POSITIVE = ["wonderful", "brilliant", "moving", "superb", "delightful", "masterpiece", "charming", "loved"]
_NEGATIVE = ["awful", "boring", "terrible", "dreadful", "waste", "clumsy", "tedious", "hated"]
_NEUTRAL = (
    "the film movie plot actor scene story director camera cast music script ending character café naïve "
    "it was a an of and to in that this with as its"
).split()


def aclimdb_reviews(n_per_class: int = 20, seed: int = 0) -> list[tuple[str, str, int, int, str]]:
    """``(split, label, id, rating, text)`` for every review ``write_aclimdb`` writes, in (split, label, id) order.

    Positive reviews (ratings 7-10) mix positive words into neutral filler, negative ones (1-4) negative words;
    texts include non-ASCII characters and the ``<br />`` tags real reviews have.
    """
    rng = np.random.default_rng(seed)
    reviews = []
    for split in ("train", "test"):
        for label, words, ratings in (("neg", _NEGATIVE, (1, 2, 3, 4)), ("pos", _POSITIVE, (7, 8, 9, 10))):
            for review_id in range(n_per_class):
                n_words = int(rng.integers(12, 30))
                chosen = [
                    str(rng.choice(words)) if rng.random() < 0.3 else str(rng.choice(_NEUTRAL))
                    for _ in range(n_words)
                ]
                text = " ".join(chosen).capitalize() + ".<br /><br />" + " ".join(chosen[:4]) + " — fin."
                reviews.append((split, label, review_id, int(rng.choice(ratings)), text))
    return reviews


def aclimdb_film(split: str, review_id: int) -> int:
    """The film ``write_aclimdb``'s URL lists give review ``review_id`` of ``split`` (either label): three reviews
    per film, train and test films disjoint, as in the real data set (all but one of its films)."""
    return (100_000 if split == "train" else 200_000) + review_id // 3


def write_aclimdb(root: Path, n_per_class: int = 20, seed: int = 0, archive: str | None = None) -> Path:
    """Write the ``aclImdb/`` tree under ``root`` (or, with ``archive="gz"``/``"xz"``, only
    ``root/aclImdb_v1.tar.gz``/``.tar.xz`` holding it); return the folder's or archive's path.

    Besides ``{train,test}/{neg,pos}/<id>_<rating>.txt`` it writes the URL lists ``{train,test}/urls_{neg,pos}.txt``
    (line N: the film page of review N, see ``aclimdb_film``) and the extras a loader must ignore: ``README``,
    ``imdb.vocab`` and a ``train/unsup/`` folder. Archive members are in a shuffled order, as a
    loader must not rely on sorted archives.
    """
    if archive not in (None, "gz", "xz"):
        raise ValueError(f"archive must be None, 'gz' or 'xz', not {archive!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {
        "aclImdb/README": b"Large Movie Review Dataset v1.0 (test fixture)\n",
        "aclImdb/imdb.vocab": "\n".join(_POSITIVE + _NEGATIVE + _NEUTRAL).encode(),
        "aclImdb/train/unsup/0_0.txt": b"unlabelled review, must be ignored",
    }
    for split in ("train", "test"):
        for label in ("neg", "pos"):
            files[f"aclImdb/{split}/urls_{label}.txt"] = "".join(
                f"http://www.imdb.com/title/tt{aclimdb_film(split, i):07d}/usercomments\n"
                for i in range(n_per_class)
            ).encode()
    for split, label, review_id, rating, text in aclimdb_reviews(n_per_class, seed):
        files[f"aclImdb/{split}/{label}/{review_id}_{rating}.txt"] = text.encode("utf-8")
    if archive is None:
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return root / "aclImdb"
    path = root / f"aclImdb_v1.tar.{archive}"
    order = np.random.default_rng(seed + 1).permutation(sorted(files))
    entries = {"aclImdb": None, "aclImdb/train": None, "aclImdb/test": None} | {
        str(n): files[n] for n in order
    }
    path.write_bytes(tar_bytes(entries, archive))
    return path


# --------------------------------------------------------------------------------------------------------- tar


def tar_bytes(entries: dict[str, bytes | None], compression: str | None = None) -> bytes:
    """A tar archive of ``entries`` (name → bytes, or ``None`` for a folder), in the given order, optionally
    compressed with ``"gz"`` or ``"xz"``. Deterministic: fixed mtimes, owners and gzip header."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_244_073_600
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    if compression == "gz":
        return gzip.compress(raw, compresslevel=6, mtime=0)
    if compression == "xz":
        return lzma.compress(raw)
    return raw
