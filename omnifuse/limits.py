"""Input limits: the largest image, recording and text a prediction decodes.

They bound what one decode costs in memory and time, checked from headers before the data is decoded, so a small
file that unpacks into gigabytes (a 9400x9400 PNG of 280 KB) is refused up front. The server, the CLI and
:class:`~omnifuse.predictor.Predictor` use the same limits.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnifuse.errors import OmnifuseError


@dataclass(frozen=True)
class InputLimits:
    """``max_image_pixels``: width x height of an image as its header states (4096 x 4096 by default, a fifth
    of Pillow's decompression-bomb limit: at most 64 MiB as RGBA while decoding). ``max_audio_seconds``: the
    duration a WAV header states. ``max_text_chars``: characters of one text."""

    max_image_pixels: int = 4096 * 4096
    max_audio_seconds: float = 600.0
    max_text_chars: int = 100_000

    def __post_init__(self):
        for name in ("max_image_pixels", "max_audio_seconds", "max_text_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise OmnifuseError(f"Expected {name} to be a positive number. Received: {value!r}")


DEFAULT_LIMITS = InputLimits()
