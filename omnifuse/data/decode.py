"""Decoding raw image and text files into arrays and strings, with errors that name the file.

Used by the loaders and by the Predictor, so a file a user hands over at serve time fails the same way as one in
a training folder.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from omnifuse.errors import OmnifuseError

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class NamedBytes(bytes):
    """A file's contents that keep the file's name (an upload's filename), so that an error names the file.

    Example: ``decode_image(NamedBytes(b"not an image", "cat.png"))`` fails with "Received: 'cat.png' (12 bytes)".
    """

    name: str

    def __new__(cls, data: bytes, name: str) -> NamedBytes:
        out = super().__new__(cls, data)
        out.name = name
        return out


def describe_source(src) -> str:
    """How an error names a file given as a path, as bytes, or as :class:`NamedBytes`."""
    if isinstance(src, NamedBytes):
        return f"'{src.name}' ({len(src)} bytes)"
    return "<bytes>" if isinstance(src, (bytes, bytearray, memoryview)) else f"'{src}'"


_describe = describe_source


def decode_image(
    src: str | os.PathLike | bytes,
    size: tuple[int, int] | None = None,
    channels: int = 3,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode an image file (or its bytes) into a ``uint8`` array of shape ``(H, W, channels)``.

    Any Pillow-readable format and mode is accepted: colour is converted to RGB (``channels=3``) or luminance
    (``channels=1``); transparent pixels are composited over black, so a fully transparent pixel reads as 0;
    16-bit images are scaled to 0-255; EXIF orientation is applied; only the first frame of animations is used.
    ``size=(height, width)`` resizes (Lanczos when shrinking, bicubic when enlarging), ignoring aspect ratio.
    ``max_pixels``: the largest width x height accepted, checked from the header before any pixel is decoded.

    Example: ``decode_image("cat.jpg", size=(32, 32)).shape == (32, 32, 3)``.
    """
    name = _describe(src)
    if channels not in (1, 3):
        raise OmnifuseError(f"Expected channels=1 (grayscale) or 3 (RGB). Received: channels={channels!r}")
    if size is not None:
        if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
            raise OmnifuseError(
                f"Expected size=(height, width) with two positive integers. Received: {size!r}"
            )
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise OmnifuseError("Expected image bytes (PNG, JPEG, ...). Received: <bytes> of length 0")
        opened = io.BytesIO(bytes(src))
    else:
        opened = Path(src)
        if not opened.is_file():
            raise OmnifuseError(
                f"Expected an image file. Received: {name}, which does not exist or is not a file"
            )
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than fails) on some damaged files; those are the files we want to reject.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(opened) as img:
                if max_pixels is not None and img.width * img.height > max_pixels:
                    raise OmnifuseError(
                        f"Expected an image of at most {max_pixels} pixels (width x height). Received: {name}, "
                        f"{img.width}x{img.height} = {img.width * img.height} pixels; shrink it first"
                    )
                img.load()
                img = ImageOps.exif_transpose(img)
                img = _to_mode(img, "RGB" if channels == 3 else "L")
                if size is not None:
                    height, width = int(size[0]), int(size[1])
                    shrinking = height * width < img.height * img.width
                    resample = Image.Resampling.LANCZOS if shrinking else Image.Resampling.BICUBIC
                    img = img.resize((width, height), resample=resample)
                array = np.asarray(img, dtype=np.uint8)
    except OmnifuseError:
        raise
    except UnidentifiedImageError as exc:
        raise OmnifuseError(
            f"Expected an image file (PNG, JPEG, BMP, GIF, TIFF, WebP, ...). Received: {name}, "
            "which is not in any image format Pillow can read"
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise OmnifuseError(f"Expected an image of reasonable size. Received: {name}: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow signals truncated or corrupt data with OSError ("image file is truncated"), SyntaxError (bad PNG
        # chunks) or ValueError, depending on the format.
        raise OmnifuseError(
            f"Expected a complete, readable image. Received: {name}, which failed to decode: {exc}"
        ) from exc
    if array.ndim == 2:
        array = array[:, :, None]
    return array


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    """``img`` in mode ``"RGB"`` or ``"L"``: alpha composited over black, 16-bit and float scaled to 0-255."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float64)
        if img.mode == "F" and values.size and values.max() <= 1.0:
            values = values * 255.0
        elif img.mode != "F" and values.size and values.max() > 255:
            values = values / 257.0  # 65535 → 255
        img = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert(mode) if img.mode != mode else img


_WORD = re.compile(r"\w")


def check_text(text: str, name: str, max_chars: int | None = None) -> str:
    """``text`` if it can be used as text: encodable as UTF-8 (no lone surrogates, as JSON's ``"\\udce9"`` or a
    command-line argument in another encoding make), at most ``max_chars`` characters, and holding at least one
    word character (a letter or digit in any script). Empty or whitespace-only text is returned as it is: callers
    treat it as absent. ``name`` is used in errors, which give the byte offset of the first bad character.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        offset = len(text[: exc.start].encode("utf-8"))
        raise OmnifuseError(
            f"Expected UTF-8 text. Received: {name} with U+{ord(text[exc.start]):04X} at byte offset {offset}, an "
            "unpaired surrogate (a byte that is not UTF-8, or a broken \\u escape); send the text as UTF-8"
        ) from None
    if max_chars is not None and len(text) > max_chars:
        raise OmnifuseError(
            f"Expected text of at most {max_chars} characters. Received: {name} of {len(text)} characters"
        )
    if text.strip() and not _WORD.search(text):
        raise OmnifuseError(
            f"Expected text with at least one letter or digit. Received: {name}, which has none "
            f"(only symbols, emoji, punctuation or invisible characters: {text[:20]!r})"
        )
    return text


def decode_text(data: bytes, name: str, max_chars: int | None = None) -> str:
    """``data`` decoded as strict UTF-8 (a leading byte-order mark dropped); ``name`` is used in errors.

    Raises :class:`OmnifuseError` for bytes that are not UTF-8 (naming the byte offset), for empty or
    whitespace-only text, and for text :func:`check_text` refuses.
    """
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = bytes(data[exc.start : exc.start + 4])
        raise OmnifuseError(
            f"Expected UTF-8 text. Received: {name} with invalid byte(s) {bad!r} at byte offset {exc.start} "
            f"({exc.reason}). Re-save the file as UTF-8."
        ) from exc
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise OmnifuseError(f"Expected non-empty text. Received: {name}, which is empty or only whitespace")
    return check_text(text, name, max_chars)


def read_text(path: str | os.PathLike) -> str:
    """The contents of a text file, decoded as strict UTF-8; errors name the file (and the offending byte offset).

    Example: ``read_text("aclImdb/train/pos/0_9.txt")``.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise OmnifuseError(
            f"Expected a readable text file. Received: '{path}': {exc.strerror or exc}"
        ) from exc
    return decode_text(data, f"'{path}'")
