"""AV-digits: a paired audio-visual digit set built on the fly from FSDD recordings and MNIST images.

Each sample is one FSDD recording (the ``audio``) plus one MNIST image of the same digit (the ``image``); the label
is the digit. Neither modality alone is meant to be enough: by default the images are degraded (Gaussian noise and
an occluding square) so an image-only model stays clearly below perfect; the ``av-digits`` preset also adds noise to
the recordings (``audio_noise``), since a spoken-digit model on FSDD's official split is otherwise near-perfect, and
a model that fuses both should beat either alone.

Pairing rule (seeded and deterministic):

- FSDD is loaded with ``fsdd_split`` (default ``"official"``: test = takes 0-4). FSDD ``train`` recordings are
  paired with MNIST ``train`` images and FSDD ``test`` recordings with MNIST ``test`` images, so no image or
  recording in test was seen in training.
- Within a split, for each digit ``d``, the MNIST images of digit ``d`` (in official order) are permuted with
  ``numpy.random.default_rng([seed, s, d]).permutation`` (``s`` = 0 for train, 1 for test), and the split's
  recordings of digit ``d`` (in FSDD order: speaker, then take) take images from that permutation in turn,
  without replacement, starting over from its beginning only if there are more recordings than images.
- Degradation of the image paired with recording ``r`` uses ``numpy.random.default_rng([seed, 2, crc32(r)])``
  (``r`` the FSDD file stem), so a recording's image is degraded the same way on every load: first a square of
  ``occlude`` pixels at a random position is set to 0, then Gaussian noise of standard deviation ``noise_std``
  (in 0-255 pixel units) is added, and the result is rounded and clipped to uint8.
- Audio noise (``audio_noise`` > 0) on recording ``r`` uses ``numpy.random.default_rng([seed, 3, crc32(r)])``: Gaussian
  noise whose standard deviation is ``audio_noise`` times the RMS of the recording's fixed-length waveform (1.0 is an
  SNR of 0 dB, 2.0 of -6 dB) is added over its whole length.

``extra["mnist_index"]`` is the position of the paired image in its MNIST split (train or test), so a pairing can be
checked against ``mnist.load()``.
"""

from __future__ import annotations

import zlib

import numpy as np

from omnifuse.data import Dataset, Split, fsdd, mnist
from omnifuse.errors import OmnifuseError

DIGITS = [str(d) for d in range(10)]
NOISE_STD = 150.0  # pixel units (0-255); see the module docstring
OCCLUDE = 12  # side of the occluding square, pixels of the 28x28 image; 0 = none
_SPLIT_CODE = {"train": 0, "test": 1}
_DEGRADE_MODES = {
    True: ("noise", "occlude"),
    "noise+occlude": ("noise", "occlude"),
    "noise": ("noise",),
    "occlude": ("occlude",),
    False: (),
    None: (),
    "none": (),
}


# the data-config keys load() reads -> its argument names (the catalog passes these; others keep their defaults)
OPTIONS = {
    "split": "fsdd_split",
    "sample_rate": "sample_rate",
    "num_samples": "num_samples",
    "degrade": "degrade",
    "noise_std": "noise_std",
    "audio_noise": "audio_noise",
}


def load(
    data_dir=None,
    download: bool | None = None,
    seed: int = 0,
    degrade: bool | str = True,
    noise_std: float = NOISE_STD,
    occlude: int = OCCLUDE,
    sample_rate: int = 8000,
    num_samples: int = 8000,
    fsdd_split: str = "official",
    audio_noise: float = 0.0,
) -> Dataset:
    """AV-digits: splits ``train``/``test`` with ``image`` uint8 (N, 28, 28, 1) and ``audio`` float32 (N, samples).

    ``degrade``: ``True`` (= ``"noise+occlude"``), ``"noise"``, ``"occlude"`` or ``False``. Task ``digit``;
    ``ids`` are the FSDD file stems; ``extra``: ``speaker``, ``index`` (FSDD take) and ``mnist_index``.
    Example: ``load(data_dir="data", degrade=False)["train"].inputs["image"].shape == (2700, 28, 28, 1)``.
    """
    try:
        modes = _DEGRADE_MODES[degrade]
    except (KeyError, TypeError):
        raise OmnifuseError(
            f"Expected degrade to be True, False, 'noise', 'occlude' or 'noise+occlude'. Received: {degrade!r}"
        ) from None
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not 0 <= noise_std < 1e4:
        raise OmnifuseError(
            f"Expected noise_std to be a number >= 0 (pixel units, 0-255). Received: {noise_std!r}"
        )
    if isinstance(occlude, bool) or not isinstance(occlude, (int, np.integer)) or not 0 <= occlude < 28:
        raise OmnifuseError(f"Expected occlude to be an integer in 0..27 (pixels). Received: {occlude!r}")
    if (
        isinstance(audio_noise, bool)
        or not isinstance(audio_noise, (int, float))
        or not 0 <= audio_noise < 1e3
    ):
        raise OmnifuseError(
            f"Expected audio_noise to be a number >= 0 (noise std / the recording's RMS). Received: {audio_noise!r}"
        )
    audio = fsdd.load(data_dir, download, split=fsdd_split, sample_rate=sample_rate, num_samples=num_samples)
    digits = mnist.load(data_dir, download)
    splits = {}
    for name, code in _SPLIT_CODE.items():
        recordings, pool = audio[name], digits[name]
        index = pair(recordings.labels["digit"], pool.labels["digit"], seed, code, name)
        images = pool.inputs["image"][index]
        if modes:
            images = degrade_images(
                images,
                recordings.ids,
                seed,
                noise_std=noise_std if "noise" in modes else 0.0,
                occlude=occlude if "occlude" in modes else 0,
            )
        waves = recordings.inputs["audio"]
        if audio_noise:
            waves = degrade_audio(waves, recordings.ids, seed, audio_noise)
        splits[name] = Split(
            inputs={"image": images, "audio": waves},
            labels={"digit": recordings.labels["digit"].copy()},
            ids=recordings.ids,
            extra={
                "speaker": recordings.extra["speaker"],
                "index": recordings.extra["index"],
                "mnist_index": index,
            },
        )
    return Dataset(
        name="av_digits",
        splits=splits,
        tasks={"digit": list(DIGITS)},
        modalities={"image": "image", "audio": "audio"},
        source=f"{audio.source} + {digits.source}",
    )


def pair(
    audio_digits: np.ndarray, image_digits: np.ndarray, seed: int, split_code: int, split: str = ""
) -> np.ndarray:
    """For each recording's digit, the index of its paired image (rule in the module docstring)."""
    index = np.empty(len(audio_digits), dtype=np.int64)
    for d in range(len(DIGITS)):
        recordings = np.flatnonzero(audio_digits == d)
        if len(recordings) == 0:
            continue
        images = np.flatnonzero(image_digits == d)
        if len(images) == 0:
            raise OmnifuseError(
                f"Expected MNIST {split} images of digit {d} to pair with {len(recordings)} FSDD {split} "
                "recordings. Received: none"
            )
        order = np.random.default_rng([seed, split_code, d]).permutation(len(images))
        index[recordings] = images[order[np.arange(len(recordings)) % len(images)]]
    return index


def degrade_images(
    images: np.ndarray, ids: np.ndarray, seed: int, noise_std: float = NOISE_STD, occlude: int = OCCLUDE
) -> np.ndarray:
    """``images`` (uint8 (N, H, W, C)) occluded and noised, each seeded by its id (rule in the module docstring)."""
    out = np.empty_like(images)
    height, width = images.shape[1:3]
    for i, (image, sample_id) in enumerate(zip(images, ids)):
        rng = np.random.default_rng([seed, 2, zlib.crc32(str(sample_id).encode("utf-8"))])
        pixels = image.astype(np.float32)
        if occlude:
            top, left = rng.integers(0, height - occlude + 1), rng.integers(0, width - occlude + 1)
            pixels[top : top + occlude, left : left + occlude] = 0.0
        if noise_std:
            pixels += rng.normal(0.0, noise_std, size=pixels.shape).astype(np.float32)
        out[i] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return out


def degrade_audio(waves: np.ndarray, ids: np.ndarray, seed: int, level: float) -> np.ndarray:
    """``waves`` (float32 (N, samples)) with Gaussian noise of ``level`` times each one's RMS, seeded by its id."""
    out = np.empty_like(waves)
    for i, (wave, sample_id) in enumerate(zip(waves, ids)):
        rng = np.random.default_rng([seed, 3, zlib.crc32(str(sample_id).encode("utf-8"))])
        rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
        out[i] = wave + rng.normal(0.0, level * rms, size=wave.shape).astype(np.float32)
    return out
