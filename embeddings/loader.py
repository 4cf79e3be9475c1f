"""Turn untrusted image bytes into a clean RGB picture, or refuse them with a clear reason.

Limits on bytes and pixels are checked from the header, before any pixel is decoded, so a
decompression bomb costs a few kilobytes of reading, not gigabytes of memory.
"""

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

# Our own pixel limit is checked on the header, before decoding (and on the frame that will be decoded); Pillow's
# check is switched off, as it would warn about legitimate large photos and refuse at its own fixed size.
Image.MAX_IMAGE_PIXELS = None
warnings.simplefilter("ignore", Image.DecompressionBombWarning)

WHITE = (255, 255, 255)
# The formats a catalogue photo comes in. Others are refused before anything is decoded: an ICO or ICNS file,
# say, may wrap a PNG far larger than its header claims, which Pillow would decode in full.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG includes cameras' multi-picture (MPO) files
Image.init()  # registers every plugin, so each format above is known to Image.open(formats=...)


class ImageError(ValueError):
    """An image that cannot be used; the message says why, for a person."""


class ImageTooLarge(ImageError):
    pass


class NotAnImage(ImageError):
    pass


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB, reduced so its shorter side is at most max_side
    width: int  # original size, before any reduction
    height: int
    format: str


@dataclass(frozen=True)
class ImageDecoder:
    """`load_image` under fixed limits: what every path that embeds untrusted bytes must use."""

    max_bytes: int
    max_pixels: int
    side: int | None = 320  # decode and keep the shorter side at about this size

    def decode(self, data: bytes) -> LoadedImage:
        return load_image(data, max_bytes=self.max_bytes, max_pixels=self.max_pixels, max_side=self.side)


def load_image(data: bytes, *, max_bytes: int, max_pixels: int, max_side: int | None = 320) -> LoadedImage:
    """Decode to RGB; with max_side, the shorter side is reduced to max_side (never enlarged)."""
    if len(data) == 0:
        raise NotAnImage("empty file")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"file is {len(data):,} bytes; the limit is {max_bytes:,}")
    image = _open_header(data)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}×{height} = {width * height:,} pixels; the limit is {max_pixels:,}")
    fmt = image.format or "unknown"
    if max_side and image.format == "JPEG":
        # Draft mode decodes a big JPEG at 1/2, 1/4 or 1/8 scale straight from the DCT, far cheaper than a
        # full decode; it keeps both sides >= max_side.
        image.draft("RGB", (max_side, max_side))
    try:
        image.seek(0)  # animated GIF/WebP/APNG: the first frame
        image.load()
        image = ImageOps.exif_transpose(image)
        rgb = to_rgb(image)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise NotAnImage(f"image data is corrupt or truncated ({exc})") from exc
    if max_side:
        rgb = reduce_shorter_side(rgb, max_side)
    return LoadedImage(image=rgb, width=width, height=height, format=fmt)


def reduce_shorter_side(image: Image.Image, side: int) -> Image.Image:
    # The shorter side, because models centre-crop a square: a wide photo keeps its full height.
    scale = side / min(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def _open_header(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError as exc:
        raise NotAnImage(f"not an image in an accepted format ({', '.join(FORMATS)})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise NotAnImage(f"not a readable image ({exc})") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: transparency flattened onto white, 16-bit scaled, CMYK converted."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return _sixteen_bit_to_rgb(image)
    if mode == "F":
        return image.point(lambda v: v * 255).convert("L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if mode in ("1", "L", "RGB") and "transparency" in image.info:  # one colour marked transparent (tRNS)
        return to_rgb(image.convert("LA" if mode != "RGB" else "RGBA"))
    if mode == "RGB" or mode.startswith("RGB"):
        return image.convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _sixteen_bit_to_rgb(image: Image.Image) -> Image.Image:
    # Pillow's convert("L") clips 16-bit values at 255 (a white picture); scale the range instead.
    wide = image.convert("I")
    _, hi = wide.getextrema()
    top = 65535 if float(hi) > 255 else 255  # type: ignore[arg-type]  # one band: a (low, high) pair of numbers
    scaled = wide.point(lambda v: v * 255 / top) if top != 255 else wide
    return scaled.convert("L").convert("RGB")
