"""Small audio, digit and medical data sets written in the real distribution formats, for offline tests.

Every writer is deterministic (seeded) and makes its classes learnable, so a test can also check that a loader kept
samples and labels together: FSDD tones rise in pitch with the digit, MNIST digits are drawn as a bar whose row is
the digit, MedMNIST images get brighter with the class, brain MRIs with a tumour have a bright blob.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

# (sample rate, channels, subtype) cycled over the recordings so every loader path meets every variant.
WAV_VARIANTS = (
    (8000, 1, "PCM_16"),
    (16000, 2, "PCM_16"),
    (44100, 1, "FLOAT"),
    (22050, 3, "PCM_24"),
    (11025, 1, "PCM_U8"),
)


def tone_frequency(digit: int) -> float:
    """The pitch of the fixture recordings of ``digit``: 300 Hz for 0, +150 Hz per digit (max 1650 < 4 kHz)."""
    return 300.0 + 150.0 * digit


def tone(digit: int, rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    envelope = np.sin(np.pi * t / seconds) ** 2
    wave = 0.5 * envelope * np.sin(2 * np.pi * tone_frequency(digit) * t) + 0.01 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


def wav_bytes(
    wave: np.ndarray, rate: int, channels: int = 1, subtype: str = "PCM_16", fmt: str = "WAV"
) -> bytes:
    """``wave`` written as a WAV (or ``fmt``) file with ``channels`` channels (scaled copies, so none cancel out)."""
    frames = np.stack([wave * (1.0 - 0.2 * c) for c in range(channels)], axis=1) if channels > 1 else wave
    buffer = io.BytesIO()
    soundfile.write(buffer, frames, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


def write_fsdd(
    root: str | Path,
    speakers=("ann", "bob", "cid"),
    per_digit: int = 6,
    archive: str | None = None,
    variants=WAV_VARIANTS,
    seed: int = 0,
) -> Path:
    """Write ``recordings/<digit>_<speaker>_<index>.wav`` for each speaker, digit and take ``0..per_digit-1``.

    Recordings cycle through ``variants`` (rate, channels, subtype) and last 0.25-0.6 s. ``archive=None`` returns the
    ``recordings`` folder; ``"xz"`` / ``"gz"`` write ``fsdd_recordings.tar.<archive>`` in ``root`` (and no folder)
    and return its path.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    k = 0
    for speaker in speakers:
        for digit in range(10):
            for index in range(per_digit):
                rate, channels, subtype = variants[k % len(variants)]
                k += 1
                wave = tone(digit, rate, float(rng.uniform(0.25, 0.6)), rng)
                files[f"{digit}_{speaker}_{index}.wav"] = wav_bytes(wave, rate, channels, subtype)
    if archive is None:
        folder = root / "recordings"
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return folder
    path = root / f"fsdd_recordings.tar.{archive}"
    root.mkdir(parents=True, exist_ok=True)
    write_tar(path, {f"recordings/{name}": data for name, data in files.items()})
    return path


def write_tar(path: str | Path, members: dict[str, bytes]) -> Path:
    """A tar archive (compression from the suffix: .xz, .gz/.tgz or none) holding ``members``, sorted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "w:xz" if path.name.endswith(".xz") else "w:gz" if path.name.endswith((".gz", ".tgz")) else "w"
    # the fastest levels: the recordings are tones with noise, which barely compress (xz preset 1 spent 3 CPU s
    # on the FSDD fixture's 7 MB, preset 0 about 1.2, for an archive 2% larger)
    options = {"preset": 0} if mode == "w:xz" else {"compresslevel": 1} if mode == "w:gz" else {}
    with tarfile.open(path, mode, **options) as tar:
        folders = sorted({str(Path(name).parent) for name in members} - {"."})
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
    return path


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) in IDX format: 00 00 08 <ndim>, big-endian dims, then the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def digit_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """28x28 uint8 images: a bright bar on row ``3 + 2 * digit`` (so the digit is learnable) over faint noise."""
    images = rng.integers(0, 30, size=(len(labels), 28, 28)).astype(np.uint8)
    for i, digit in enumerate(labels):
        start = int(rng.integers(2, 10))
        images[i, 3 + 2 * int(digit) : 5 + 2 * int(digit), start : start + 16] = 255
    return images


MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_mnist(
    root: str | Path, n_train: int = 200, n_test: int = 50, gz: bool = True, seed: int = 0
) -> Path:
    """The four MNIST IDX files (gzipped unless ``gz=False``) in ``root``; labels cycle 0-9. Returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n, dtype=np.uint8) % 10
        rng.shuffle(labels)
        for stem, array in zip(MNIST_FILES[split], (digit_images(labels, rng), labels)):
            data = idx_bytes(array)
            if gz:
                (root / f"{stem}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (root / stem).write_bytes(data)
    return root


def write_medmnist_npz(
    path: str | Path,
    n=(40, 10, 20),
    classes: int = 2,
    channels: int = 1,
    size: int = 28,
    seed: int = 0,
) -> Path:
    """A MedMNIST v2 ``.npz``: ``{train,val,test}_images`` ((N, H, W) for 1 channel, else (N, H, W, 3)) and
    ``_labels`` (N, 1) uint8 cycling over the classes; image brightness grows with the class.

    ``n`` is one count for every split or ``(train, val, test)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = (n, n, n) if isinstance(n, int) else tuple(n)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), counts):
        labels = (np.arange(count) % classes).astype(np.uint8)
        shape = (count, size, size) if channels == 1 else (count, size, size, channels)
        base = (40 + 180 * labels / max(classes - 1, 1)).reshape((-1,) + (1,) * (len(shape) - 1))
        arrays[f"{split}_images"] = np.clip(base + rng.normal(0, 10, shape), 0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels[:, None]
    np.savez_compressed(path, **arrays)
    return path


def mri_image(tumor: bool, size: tuple[int, int], mode: str, rng: np.random.Generator) -> Image.Image:
    """A fake MRI slice: a grey ellipse (the head) of its own shape with dark blobs of their own places (so no
    two slices are near-duplicates), with a bright blob when ``tumor``, in Pillow ``mode``."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    cy0, cx0 = h * rng.uniform(0.42, 0.58), w * rng.uniform(0.42, 0.58)
    ay, ax = h * rng.uniform(0.3, 0.42), w * rng.uniform(0.3, 0.42)
    head = ((yy - cy0) / ay) ** 2 + ((xx - cx0) / ax) ** 2 < 1
    pixels = np.where(head, 90.0, 5.0)
    for _ in range(4):
        by, bx, r = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w, rng.uniform(0.06, 0.12)
        pixels -= 60 * head * ((((yy - by) / (h * r)) ** 2 + ((xx - bx) / (w * r)) ** 2) < 1)
    pixels += rng.normal(0, 8, size)
    if tumor:
        cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
        pixels += 140 * (((yy - cy) / (h * 0.12)) ** 2 + ((xx - cx) / (w * 0.12)) ** 2 < 1)
    gray = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
    if mode == "P":
        return gray.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    return gray.convert(mode)


# (mode, format, suffix): JPEG in L and RGB, PNG in L/RGB/RGBA/P/LA, and a PNG carrying a .jpg name.
MRI_VARIANTS = (
    ("L", "JPEG", ".jpg"),
    ("RGB", "JPEG", ".jpeg"),
    ("RGB", "PNG", ".png"),
    ("L", "PNG", ".jpg"),  # PNG named .jpg, as in the original upload
    ("RGBA", "PNG", ".PNG"),
    ("P", "PNG", ".png"),
    ("L", "JPEG", ".JPG"),
    ("LA", "PNG", ".png"),
)


def write_brain_mri(
    root: str | Path, n_yes: int = 12, n_no: int = 8, archive: bool = True, seed: int = 0
) -> Path:
    """``brain_tumor_dataset/{yes,no}/`` images of assorted formats, modes and sizes (names like ``Y1.jpg`` and
    ``1 no.jpeg``). ``archive=True`` writes ``brain_mri_tumor.tar.gz`` in ``root`` and returns it; otherwise returns
    the ``brain_tumor_dataset`` folder.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    members: dict[str, bytes] = {}
    k = 0
    for label, count in (("yes", n_yes), ("no", n_no)):
        for i in range(1, count + 1):
            mode, fmt, suffix = MRI_VARIANTS[k % len(MRI_VARIANTS)]
            k += 1
            size = (int(rng.integers(40, 90)), int(rng.integers(40, 90)))
            buffer = io.BytesIO()
            mri_image(label == "yes", size, mode, rng).save(buffer, format=fmt)
            name = f"Y{i}{suffix}" if label == "yes" else f"{i} no{suffix}"
            members[f"brain_tumor_dataset/{label}/{name}"] = buffer.getvalue()
    if archive:
        root.mkdir(parents=True, exist_ok=True)
        return write_tar(root / "brain_mri_tumor.tar.gz", members)
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root / "brain_tumor_dataset"
