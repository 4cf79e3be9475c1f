"""The image loader on hostile and unusual files."""

import io
import struct
import zlib

import numpy as np
import pytest
from helpers import jpeg_bytes, png_bytes
from PIL import Image, ImageOps

from embeddings import ImageDecoder, ImageTooLarge, NotAnImage, load_image
from embeddings.loader import to_rgb

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


def _file(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "limits", "message"),
    [
        (b"", {}, "empty file"),
        (b"\xff" * 2000, {"max_bytes": 1000}, "file is 2,000 bytes; the limit is 1,000"),
        (_png_header_only(16000, 14464), {}, "image is 16000×14464 = 231,424,000 pixels; the limit is 40,000,000"),
        (b"%PDF-1.4", {}, "not an image in an accepted format (JPEG, PNG, WEBP, GIF, BMP, TIFF)"),
    ],
)
def test_refusals_say_exactly_why(data, limits, message):
    with pytest.raises((NotAnImage, ImageTooLarge)) as refused:
        load(data, **limits)
    assert str(refused.value) == message


def test_pillows_own_bomb_check_if_enabled_is_reported_as_too_large(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the loader turns it off; the branch must still be right
    with pytest.raises(ImageTooLarge, match="could be decompression bomb"):
        load(png_bytes(Image.new("RGB", (32, 32))))


def test_image_decoder_applies_its_limits_and_side():
    decoder = ImageDecoder(max_bytes=100_000, max_pixels=1_000, side=16)
    loaded = decoder.decode(png_bytes(Image.new("RGB", (30, 20), "red")))
    assert (loaded.image.size, loaded.width, loaded.height, loaded.format) == ((24, 16), 30, 20, "PNG")
    with pytest.raises(ImageTooLarge, match=r"pixels; the limit is 1,000$"):
        decoder.decode(png_bytes(Image.new("RGB", (40, 40), "red")))
    with pytest.raises(ImageTooLarge, match=r"bytes; the limit is 10$"):
        ImageDecoder(max_bytes=10, max_pixels=1_000).decode(png_bytes(Image.new("RGB", (4, 4))))


@pytest.mark.parametrize(
    ("size", "side", "expected"),
    [
        ((300, 200), 100, (150, 100)),  # wide: the height is the shorter side
        ((200, 300), 100, (100, 150)),  # tall: the width is
        ((4, 2), 1, (2, 1)),
        ((2, 4), 1, (1, 2)),
    ],
)
def test_the_shorter_side_is_reduced_to_exactly_max_side(size, side, expected):
    loaded = load(png_bytes(Image.new("RGB", size, "red")), max_side=side)
    assert loaded.image.size == expected
    assert (loaded.width, loaded.height) == size


@pytest.mark.parametrize(("size", "side"), [((200, 100), 150), ((100, 100), 100), ((50, 80), 320)])
def test_pictures_are_never_enlarged(size, side):
    assert load(png_bytes(Image.new("RGB", size, "red")), max_side=side).image.size == size


def test_large_reductions_box_reduce_first_then_resample_bicubic():
    """Pillow's two-step reduction (reducing_gap=2): cheap on big photos, and the exact pixels embeddings see."""
    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 256, (48, 72, 3), dtype=np.uint8))
    loaded = load(png_bytes(source), max_side=8)
    expected = source.reduce(3).resize((12, 8), Image.Resampling.BICUBIC)
    assert np.array_equal(np.asarray(loaded.image), np.asarray(expected))


def test_big_jpeg_is_decoded_at_a_fraction_of_its_pixels(monkeypatch):
    decoded = []
    transpose = ImageOps.exif_transpose

    def spy(image, **kwargs):
        decoded.append(image.size)
        return transpose(image, **kwargs)

    monkeypatch.setattr(ImageOps, "exif_transpose", spy)
    load(jpeg_bytes(Image.new("RGB", (3000, 2000), "red")), max_side=320)
    assert decoded == [(750, 500)]  # 1/4 scale: the smallest draft that keeps both sides >= 320


def test_without_max_side_a_jpeg_is_decoded_at_full_size():
    loaded = load(jpeg_bytes(Image.new("RGB", (400, 300), "red")), max_side=None)
    assert loaded.image.size == (400, 300)


def test_rgb_pictures_are_passed_through_without_a_copy():
    image = Image.new("RGB", (8, 8), "red")
    assert to_rgb(image) is image


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "TIFF"])
def test_palette_without_transparency_keeps_its_colours(fmt):
    image = Image.new("P", (2, 1), 0)
    image.putpalette([10, 20, 30, 200, 100, 50])
    image.putpixel((1, 0), 1)
    assert np.asarray(load(_file(image, fmt)).image)[0].tolist() == [[10, 20, 30], [200, 100, 50]]


def test_palette_with_alpha_tiff_is_flattened_on_white():
    image = Image.new("PA", (2, 1))
    image.putpalette([10, 20, 30, 200, 100, 50])
    image.putpixel((0, 0), (0, 0))  # transparent
    image.putpixel((1, 0), (1, 255))
    loaded = load(_file(image, "TIFF"))
    assert np.asarray(loaded.image)[0].tolist() == [[255, 255, 255], [200, 100, 50]]


def test_greyscale_with_a_transparent_grey_is_flattened_on_white():
    image = Image.new("L", (2, 1), 100)
    image.putpixel((1, 0), 200)
    pixels = np.asarray(load(png_bytes(image, transparency=100)).image)[0]
    assert pixels.tolist() == [[255, 255, 255], [200, 200, 200]]


SIXTEEN_BIT = [0, 257 * 128, 60000, 65535]
SCALED = [[0] * 3, [128] * 3, [233] * 3, [255] * 3]  # value × 255 / 65535


@pytest.mark.parametrize(
    ("mode", "dtype"), [("I;16", "<u2"), ("I;16L", "<u2"), ("I;16B", ">u2"), ("I;16N", "=u2"), ("I", "=i4")]
)
def test_every_wide_greyscale_layout_is_scaled_to_8_bits(mode, dtype):
    image = Image.frombytes(mode, (4, 1), np.array(SIXTEEN_BIT, dtype=dtype).tobytes())
    assert np.asarray(to_rgb(image))[0].tolist() == SCALED


@pytest.mark.parametrize(("mode", "dtype"), [("I;16B", ">u2"), ("I", "=i4")])
def test_big_endian_and_32_bit_tiffs_are_scaled(mode, dtype):
    image = Image.frombytes(mode, (4, 1), np.array(SIXTEEN_BIT, dtype=dtype).tobytes())
    loaded = load(_file(image, "TIFF"))
    assert np.asarray(loaded.image)[0].tolist() == SCALED


def test_sixteen_bit_png_that_only_uses_8_bit_values_keeps_them():
    image = Image.fromarray(np.array([[0, 1, 128, 255]], dtype=np.uint16))
    pixels = np.asarray(load(png_bytes(image)).image)[0, :, 0]
    assert pixels.tolist() == [0, 1, 128, 255]  # not rescaled as if 255 were a dark 16-bit value


def test_floating_point_tiff_maps_0_to_1_onto_0_to_255():
    image = Image.fromarray(np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32))
    pixels = np.asarray(load(_file(image, "TIFF")).image)[0].astype(int)
    assert np.abs(pixels - np.array([[0] * 3, [64] * 3, [128] * 3, [255] * 3])).max() <= 1


def test_one_bit_png_with_transparency_is_flattened_on_white():
    image = Image.new("1", (2, 1), 0)
    image.putpixel((1, 0), 1)
    pixels = np.asarray(load(png_bytes(image, transparency=0)).image)[0]
    assert pixels.tolist() == [[255, 255, 255], [255, 255, 255]]


def test_rgb_png_with_a_transparent_colour_is_flattened_on_white():
    image = Image.new("RGB", (2, 1), (10, 20, 30))
    image.putpixel((1, 0), (200, 100, 50))
    pixels = np.asarray(load(png_bytes(image, transparency=(10, 20, 30))).image)[0]
    assert pixels.tolist() == [[255, 255, 255], [200, 100, 50]]
