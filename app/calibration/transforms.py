"""Competitor-style photos: a catalogue image put through one of the ways a seller's photo differs from the
factory's clean shot, with a fixed seed (the same query on every run)."""

import io
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

Transform = Callable[[Image.Image, random.Random], Image.Image]


def _resize(image: Image.Image, rng: random.Random) -> Image.Image:
    scale = rng.uniform(0.35, 0.7)
    return image.resize((max(32, int(image.width * scale)), max(32, int(image.height * scale))))


def _crop(image: Image.Image, rng: random.Random) -> Image.Image:
    w, h = image.size
    keep = rng.uniform(0.65, 0.85)
    x0, y0 = rng.uniform(0, (1 - keep) * w), rng.uniform(0, (1 - keep) * h)
    return image.crop((int(x0), int(y0), int(x0 + keep * w), int(y0 + keep * h)))


def _mirror(image: Image.Image, rng: random.Random) -> Image.Image:
    return ImageOps.mirror(image)


def _rotate(image: Image.Image, rng: random.Random) -> Image.Image:
    angle = rng.choice([-1, 1]) * rng.uniform(8, 25)
    return image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))


def _colour(image: Image.Image, rng: random.Random) -> Image.Image:
    hue, sat, val = image.convert("HSV").split()
    shift = rng.randint(15, 40) * rng.choice([-1, 1])
    hue = hue.point(lambda x: (x + shift) % 256)
    shifted = Image.merge("HSV", (hue, sat, val)).convert("RGB")
    return ImageEnhance.Brightness(ImageEnhance.Color(shifted).enhance(rng.uniform(0.7, 1.3))).enhance(
        rng.uniform(0.85, 1.15)
    )


def _pad(image: Image.Image, rng: random.Random) -> Image.Image:
    """The product on a bigger, differently coloured backdrop."""
    scale = rng.uniform(1.3, 1.8)
    colour = tuple(rng.randint(0, 255) for _ in range(3))
    canvas = Image.new("RGB", (int(image.width * scale), int(image.height * scale)), colour)
    canvas.paste(image, (rng.randint(0, canvas.width - image.width), rng.randint(0, canvas.height - image.height)))
    return canvas


def _banner(image: Image.Image, rng: random.Random) -> Image.Image:
    """A sale banner across the top or bottom and a price badge in a corner."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    w, h = image.size
    band = int(h * rng.uniform(0.12, 0.2))
    top = rng.random() < 0.5
    y0 = 0 if top else h - band
    draw.rectangle((0, y0, w, y0 + band), fill=(rng.randint(180, 255), rng.randint(0, 60), rng.randint(0, 60)))
    draw.text((w * 0.05, y0 + band * 0.3), "HOT SALE  -50%  FREE SHIPPING", fill=(255, 255, 255))
    r = int(min(w, h) * 0.1)
    cx, cy = (w - r - 4, h - r - 4) if top else (w - r - 4, r + 4)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 210, 0))
    draw.text((cx - r * 0.6, cy - 5), "$9.99", fill=(0, 0, 0))
    return image


def _screenshot(image: Image.Image, rng: random.Random) -> Image.Image:
    """A marketplace app screenshot: status and search bars above, price, title and buttons below."""
    w = image.width
    photo = image.resize((w, int(image.height * w / image.width)))
    top, bottom = int(w * 0.22), int(w * 0.55)
    canvas = Image.new("RGB", (w, top + photo.height + bottom), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    header = (rng.randint(200, 255), rng.randint(60, 120), rng.randint(0, 40))
    draw.rectangle((0, 0, w, top), fill=header)
    draw.text((8, 6), "9:41", fill=(255, 255, 255))
    draw.rounded_rectangle((w * 0.05, top * 0.45, w * 0.95, top * 0.85), radius=10, fill=(255, 255, 255))
    draw.text((w * 0.1, top * 0.55), "search products", fill=(150, 150, 150))
    canvas.paste(photo, (0, top))
    y = top + photo.height
    draw.text((w * 0.04, y + 10), "US $3.99  -40%", fill=(230, 20, 20))
    for line in range(3):
        draw.rectangle(
            (w * 0.04, y + 40 + line * 22, w * rng.uniform(0.5, 0.95), y + 52 + line * 22), fill=(90, 90, 90)
        )
    draw.rectangle((w * 0.5, y + bottom - 50, w * 0.96, y + bottom - 12), fill=header)
    draw.text((w * 0.6, y + bottom - 38), "Buy now", fill=(255, 255, 255))
    return canvas


TRANSFORMS: dict[str, Transform] = {
    "resize": _resize,
    "crop": _crop,
    "mirror": _mirror,
    "rotate": _rotate,
    "colour": _colour,
    "pad": _pad,
    "banner": _banner,
    "screenshot": _screenshot,
}


def competitor_photo(path: Path, transform: str, seed: int) -> bytes:
    """A catalogue photo as a competitor would show it, JPEG-encoded at a web quality."""
    rng = random.Random(f"{seed}:{path.name}:{transform}")
    with Image.open(path) as opened:
        image = TRANSFORMS[transform](opened.convert("RGB"), rng)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=rng.randint(70, 90))
    return buffer.getvalue()
