import io

import numpy as np
import pytest
from PIL import Image

from omnifuse.data.decode import decode_image, read_text
from omnifuse.errors import OmnifuseError


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


def test_png_from_path_and_bytes_is_exact(tmp_path, rgb):
    data = _encode(Image.fromarray(rgb))
    (tmp_path / "a.png").write_bytes(data)
    for src in (tmp_path / "a.png", str(tmp_path / "a.png"), data):
        out = decode_image(src)
        assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
        np.testing.assert_array_equal(out, rgb)


def test_jpeg(tmp_path):
    colour = np.full((16, 24, 3), (200, 40, 90), dtype=np.uint8)
    out = decode_image(_encode(Image.fromarray(colour), "JPEG", quality=95))
    assert out.shape == (16, 24, 3)
    assert np.abs(out.astype(int) - colour).max() <= 3


def test_grayscale_to_rgb_and_rgb_to_grayscale(rgb):
    gray = rgb[..., 0]
    out = decode_image(_encode(Image.fromarray(gray, mode="L")))
    assert out.shape == (5, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    single = decode_image(_encode(Image.fromarray(gray, mode="L")), channels=1)
    assert single.shape == (5, 7, 1)
    np.testing.assert_array_equal(single[..., 0], gray)
    luminance = decode_image(_encode(Image.fromarray(rgb)), channels=1)
    assert luminance.shape == (5, 7, 1)


def test_rgba_composited_over_black():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque
    rgba[0, 1] = (255, 0, 0, 0)  # fully transparent red
    rgba[1, 0] = (200, 100, 0, 128)  # half transparent
    out = decode_image(_encode(Image.fromarray(rgba, mode="RGBA")))
    assert out.shape == (2, 2, 3)
    assert out[0, 0].tolist() == [10, 20, 30]
    assert out[0, 1].tolist() == [0, 0, 0]
    assert np.abs(out[1, 0].astype(int) - [100, 50, 0]).max() <= 1


def test_palette_and_sixteen_bit():
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), mode="P")
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    out = decode_image(_encode(palette))
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [0, 0, 255]

    deep = Image.fromarray(np.array([[0, 65535], [32896, 257]], dtype=np.uint16))
    out = decode_image(_encode(deep), channels=1)
    assert out[..., 0].tolist() == [[0, 255], [128, 1]]


def test_resize_takes_height_then_width():
    image = Image.fromarray(np.full((10, 20, 3), 77, dtype=np.uint8))
    out = decode_image(_encode(image), size=(4, 6))
    assert out.shape == (4, 6, 3)
    assert np.all(out == 77)
    assert decode_image(_encode(image), size=(30, 50)).shape == (30, 50, 3)


def test_not_an_image(tmp_path):
    with pytest.raises(OmnifuseError, match=r"Expected an image file.*Received: <bytes>"):
        decode_image(b"hello, this is text")
    path = tmp_path / "notes.png"
    path.write_text("not really a png")
    with pytest.raises(OmnifuseError, match="not in any image format") as info:
        decode_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(OmnifuseError, match="length 0"):
        decode_image(b"")
    with pytest.raises(OmnifuseError, match="does not exist") as info:
        decode_image(tmp_path / "missing.jpg")
    assert "missing.jpg" in str(info.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(tmp_path, rgb, fmt):
    big = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(big), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OmnifuseError, match="complete, readable image") as info:
        decode_image(path)
    assert str(path) in str(info.value)


def test_bad_arguments(rgb):
    data = _encode(Image.fromarray(rgb))
    with pytest.raises(OmnifuseError, match="channels=1 .* or 3"):
        decode_image(data, channels=4)
    with pytest.raises(OmnifuseError, match=r"size=\(height, width\)"):
        decode_image(data, size=(0, 5))


def test_read_text(tmp_path):
    path = tmp_path / "review.txt"
    path.write_bytes("Naïve but fun — 10/10\n".encode())
    assert read_text(path) == "Naïve but fun — 10/10\n"
    path.write_bytes(b"\xef\xbb\xbfwith a byte-order mark")
    assert read_text(path) == "with a byte-order mark"


def test_read_text_errors(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"abc\ndef caf\xe9")
    with pytest.raises(OmnifuseError, match=r"UTF-8.*byte offset 11") as info:
        read_text(bad)
    assert str(bad) in str(info.value)
    for content in (b"", b"  \n\t "):
        empty = tmp_path / "empty.txt"
        empty.write_bytes(content)
        with pytest.raises(OmnifuseError, match="empty or only whitespace") as info:
            read_text(empty)
        assert str(empty) in str(info.value)
    with pytest.raises(OmnifuseError, match="readable text file") as info:
        read_text(tmp_path / "absent.txt")
    assert "absent.txt" in str(info.value)
