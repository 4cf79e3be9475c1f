"""The image loader on hostile and unusual files."""

import io
import struct
import zlib

import numpy as np
import pytest
from helpers import jpeg_bytes, png_bytes
from PIL import Image

from embeddings import ImageTooLarge, NotAnImage, load_image

LIMITS = {"max_bytes": 5_000_000, "max_pixels": 40_000_000}


def load(data: bytes, **overrides):
    return load_image(data, **{**LIMITS, **overrides})


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (200, 100), "red")
    image.paste(Image.new("RGB", (100, 100), "blue"), (100, 0))  # blue on the right
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    loaded = load(buffer.getvalue())
    assert loaded.image.size == (100, 200)
    bottom = np.asarray(loaded.image)[-20:, 50]
    assert bottom[:, 2].mean() > 200 and bottom[:, 0].mean() < 60  # the blue half is now at the bottom


def test_palette_with_transparency_is_flattened_on_white():
    image = Image.new("P", (64, 64), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 32, 64))
    loaded = load(png_bytes(image, transparency=0))
    pixels = np.asarray(loaded.image)
    assert loaded.image.mode == "RGB"
    assert tuple(pixels[10, 10]) == (255, 0, 0)
    assert tuple(pixels[10, 50]) == (255, 255, 255)  # transparent → white, not black


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_flattened_on_white(mode):
    image = Image.new(mode, (32, 32), (0, 0) if mode == "LA" else (0, 0, 0, 0))
    pixels = np.asarray(load(png_bytes(image)).image)
    assert pixels.min() == 255


def test_greyscale_and_cmyk_become_rgb():
    grey = load(jpeg_bytes(Image.new("L", (40, 40), 128)))
    assert grey.image.mode == "RGB"
    buffer = io.BytesIO()
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(buffer, format="JPEG")
    red = np.asarray(load(buffer.getvalue()).image)[20, 20]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_sixteen_bit_png_is_scaled_not_clipped():
    ramp = (np.arange(256 * 16, dtype=np.uint16).reshape(16, 256) * 16).astype(np.uint16)
    image = Image.fromarray(ramp)  # uint16 → mode I;16
    pixels = np.asarray(load(png_bytes(image)).image)[..., 0].astype(int)
    assert pixels.max() >= 250 and pixels.min() <= 5
    assert len(np.unique(pixels)) > 100  # a gradient survives; clipping would give a flat white picture


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("green", "blue", "red")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    pixel = np.asarray(load(buffer.getvalue()).image)[16, 16]
    assert pixel[1] > 100 and pixel[0] < 60 and pixel[2] < 60


def test_big_jpeg_is_decoded_in_draft_mode_and_reduced():
    big = Image.effect_noise((3000, 2000), 40).convert("RGB")
    loaded = load(jpeg_bytes(big), max_side=320)
    assert (loaded.width, loaded.height) == (3000, 2000)  # the original size is reported
    assert loaded.image.size == (480, 320)  # shorter side reduced, aspect kept


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge bitmap but carries almost no data: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("size", [(16000, 14464), (25000, 25000)])
def test_pixel_bomb_is_refused_before_decoding(size):
    with pytest.raises(ImageTooLarge, match="pixels"):
        load(_png_header_only(*size))


def test_byte_limit_is_checked_first():
    with pytest.raises(ImageTooLarge, match="bytes"):
        load(b"\xff" * 2000, max_bytes=1000)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty"), (b"%PDF-1.4 not an image", "not an image"), (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image")],
)
def test_garbage_is_refused_with_a_reason(data, message):
    with pytest.raises(NotAnImage, match=message):
        load(data)


def test_truncated_jpeg_is_refused():
    data = jpeg_bytes(Image.effect_noise((400, 400), 50).convert("RGB"))
    with pytest.raises(NotAnImage, match="corrupt or truncated"):
        load(data[: len(data) // 2])


def ico_wrapping(png: bytes, claimed: int = 16) -> bytes:
    """An ICO whose one entry claims a 16×16 icon but holds the given PNG: Pillow decodes the PNG in full."""
    entry = struct.pack("<BBBBHHII", claimed, claimed, 0, 0, 1, 32, len(png), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


@pytest.mark.parametrize(
    "data",
    [
        ico_wrapping(_png_header_only(20000, 20000)),
        ico_wrapping(png_bytes(Image.new("RGB", (32, 32), "red"))),
        b"icns" + struct.pack(">I", 8 + 8 + 100) + b"ic08" + struct.pack(">I", 108) + b"\0" * 100,
    ],
)
def test_formats_a_catalogue_does_not_use_are_refused_before_decoding(data):
    with pytest.raises(NotAnImage, match="accepted format"):
        load(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_the_accepted_formats_decode(fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format=fmt)
    loaded = load(buffer.getvalue())
    assert (loaded.width, loaded.height, loaded.format) == (64, 48, fmt)
