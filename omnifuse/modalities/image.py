"""Images: uint8 (B, H, W, C) pixels 0-255; corruption is Gaussian noise scaled by each image's own spread."""

from __future__ import annotations

DTYPE = "uint8"
CORRUPTION = "Gaussian noise, std / image std"
MAX_LEVEL = 2.0  # noise of twice the image's own standard deviation
LEVELS = (0.0, 0.25, 0.5, 1.0, MAX_LEVEL)
VOCABULARY = False  # no vocabulary learnt from the training data
CELL = "path"  # a CSV cell holds an image file's path (relative to the CSV)
# the files of a folder (or a CSV column) that hold images
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
COLUMN_KINDS = ("image",)  # a table's column of image files
REQUEST = "file"  # a request sends an image file (base64 in JSON)
EXPLAIN = "integrated_gradients"  # how omnifuse/evaluation/explain.py scores a sample
CONTENT_TYPES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/bmp",
    "image/x-ms-bmp",
    "image/webp",
    "image/tiff",
)


def sample_shape(*, image_shape=None, **_) -> tuple[int, ...]:
    if image_shape is None:
        raise ValueError("An image modality needs the images' shape (H, W, C).")
    shape = tuple(int(d) for d in image_shape)
    return (*shape, 1) if len(shape) == 2 else shape


def blank(batch, shape):
    import tensorflow as tf

    return tf.zeros([batch, *shape], tf.uint8)


def read_cell(cell, files, column_kind: str = "image"):
    """A table's image cell (a path relative to the table, or a folder's file) as uint8 (H, W, 3) pixels, at
    ``files.image_size`` (``files``: the loader's :class:`omnifuse.data.cells.Decoder`); the first image fixes
    the size when none is given."""
    from omnifuse.data.decode import decode_image

    image = decode_image(files.file(cell), size=files.image_size, channels=3)
    if files.image_size is None:
        files.image_size = image.shape[:2]
    return image


def column_array(n: int, files):
    """The array a table's image column fills: black (n, H, W, 3) uint8 images."""
    import numpy as np

    return np.zeros((n, *(files.image_size or (1, 1)), 3), dtype=np.uint8)


def id_reason(filled: list[str], column_kind: str) -> None:
    """A column of image paths is never an id."""
    return None


def warn_column(path, column: str, values: list[str], log) -> bool:
    """Nothing to warn about in a column of image paths."""
    return False


def corrupt(value, level, seed):
    """``value`` (B, H, W, C) uint8 with Gaussian noise of ``level`` (B,) times each image's own standard
    deviation, rounded and clipped back to 0-255; ``seed``: a stateless seed (2 ints)."""
    import tensorflow as tf

    x = tf.cast(value, tf.float32)
    axes = list(range(1, len(value.shape)))
    scale = tf.math.reduce_std(x, axis=axes, keepdims=True)
    return tf.cast(tf.clip_by_value(tf.round(_noisy(x, scale, level, seed)), 0.0, 255.0), tf.uint8)


def _noisy(x, scale, level, seed):
    """``x`` plus standard normal noise times ``scale`` times each sample's ``level``."""
    import tensorflow as tf

    shape = tf.concat([tf.shape(level), tf.ones([len(x.shape) - 1], tf.int32)], axis=0)
    return x + tf.random.stateless_normal(tf.shape(x), seed=seed) * scale * tf.reshape(level, shape)


def describe(*, image_shape, **_) -> dict:
    h, w, c = image_shape
    kind = "RGB" if c == 3 else "grayscale"
    return {"shape": [h, w, c], "expects": f"an image file (PNG, JPEG, ...), resized to {w}x{h}, {kind}"}


def example(n: int, rng, *, image_shape, **_):
    return rng.integers(0, 256, (n, *image_shape), dtype="uint8")


def upload(name: str, info: dict, rng) -> tuple[str, object]:
    """A PNG file field of random pixels at the model's image size."""
    import io

    from PIL import Image

    h, w, c = info["shape"]
    pixels = rng.integers(0, 256, (h, w, c), dtype="uint8")
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if c == 1 else pixels).save(buf, format="PNG")
    return "file", (f"{name}.png", buf.getvalue(), "image/png")


def feed(info: dict) -> str:
    return "uint8 pixels 0-255, " + info.get("expects", "").replace("an image file (PNG, JPEG, ...), ", "")


def decode(name: str, values: list, *, limits, image_shape, **_):
    """The model's (B, H, W, C) uint8 array and (B,) presence mask for ``values``: image paths, bytes or arrays
    of the model's shape (``None``: absent)."""
    import numpy as np

    from omnifuse.data.decode import decode_image
    from omnifuse.errors import OmnifuseError

    h, w, c = image_shape
    mask = np.array([v is not None for v in values], dtype=np.float32)
    out = np.zeros((len(values), *image_shape), dtype=np.uint8)
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, np.ndarray):
            arr = value[..., None] if value.ndim == 2 else value
            if arr.shape != (h, w, c):
                raise OmnifuseError(
                    f"Expected an image array of shape {(h, w, c)}. Received: shape {arr.shape}"
                )
            out[i] = arr.astype(np.uint8)
            continue
        arr = decode_image(value, size=(h, w), channels=c, max_pixels=limits.max_image_pixels)
        out[i] = arr if arr.ndim == 3 else arr[..., None]
    return out, mask


def warm_up(*, image_shape, **_):
    """One sample a server predicts on before its first request (black pixels)."""
    import numpy as np

    return np.zeros(image_shape, np.uint8)


def bad_requests(name: str, info: dict, rng) -> dict[str, tuple[str, object]]:
    """Values a server must refuse with a 4xx: a corrupt PNG and one whose header claims 10^10 pixels."""
    noise = rng.integers(0, 256, 4096, dtype="uint8").tobytes()
    return {
        "corrupt_png": ("part", (f"{name}.png", noise, "image/png")),
        "png_huge_area": ("part", (f"{name}.png", _png_claiming(100_000, 100_000), "image/png")),
    }


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` pixels, followed by a few bytes of image data: a decoder
    that trusts the header would allocate the whole area."""
    import struct
    import zlib

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def summarise(attribution, **_) -> dict:
    """One image's explanation from its attribution (H, W, C): a heat map (H, W), summed over colour channels."""
    return {"method": "integrated_gradients", "heatmap": attribution.sum(axis=-1)}


def show(value, why: dict, path, *, scale: int = 3, **_) -> dict:
    """One image as the report shows it: a small PNG thumbnail at ``path``, the image beside it with its heat map
    (``why``: its explanation) laid over it (orange raises the explained class, blue lowers it), each ``scale``
    times the model's resolution, nearest-neighbour."""
    import numpy as np
    from PIL import Image

    from omnifuse.rundir import atomic_write

    image = np.asarray(value, np.uint8)
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    heat = np.asarray(why["heatmap"], np.float64)
    peak = float(np.abs(heat).max()) or 1.0
    strength = (np.abs(heat) / peak)[..., None]
    colour = np.where(heat[..., None] >= 0, [217, 130, 43], [47, 111, 223])
    overlay = (rgb * (1 - 0.75 * strength) + colour * 0.75 * strength).astype(np.uint8)
    both = np.concatenate([rgb, np.full((rgb.shape[0], 2, 3), 255, np.uint8), overlay], axis=1)
    picture = Image.fromarray(both).resize((both.shape[1] * scale, both.shape[0] * scale), Image.NEAREST)
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG", optimize=True))
    return {"png": path.name}


def duplicate_keys(values, threshold: float) -> list[tuple]:
    """Each image's (exact, near) duplicate keys: a hash of its pixels, and its group of
    :func:`omnifuse.data.duplicates.near_duplicate_groups` (thumbnails that correlate above ``threshold``)."""
    import numpy as np

    from omnifuse.data.duplicates import near_duplicate_groups

    groups = near_duplicate_groups(values, threshold)
    return [(_digest(np.ascontiguousarray(v).tobytes()), int(g)) for v, g in zip(values, groups)]


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.blake2b(data, digest_size=12).hexdigest()


def glimpse(value, name: str, folder, stem: str, **_) -> str:
    """One image in a Markdown table cell: a 64x64 thumbnail written to ``folder`` (beside the Markdown)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(exist_ok=True)
    file = folder / f"{stem}_{name}.png"
    Image.fromarray(np.asarray(value).squeeze().astype(np.uint8)).resize((64, 64)).save(file)
    return f"![{name}]({folder.name}/{file.name})"


def as_input(array):
    """A data set's images (N, H, W, C) as the model's input: grey ones (N, H, W) given their channel axis."""
    return array[..., None] if array.ndim == 3 else array
