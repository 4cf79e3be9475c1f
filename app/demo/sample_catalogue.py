"""A synthetic factory catalogue: deterministic product photos drawn with Pillow, plus a manifest.

The demo, the tests and the benchmarks build their catalogues with it, so the project ships no binary
images and any size can be made (`write_catalogue(..., factories=100, products_per_factory=20)`).
Each factory has a house palette and each product a design (body shape, pattern, fittings); a product's
second view is the same design on another background, turned and scaled, as a second catalogue shot.
"""

import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

REGIONS = ["Yiwu", "Yongkang", "Dongguan", "Shenzhen", "Ningbo", "Guangzhou", "Shantou", "Wenzhou"]
CATEGORIES = ["mug", "lamp", "toy", "bag", "bottle", "vase", "speaker", "clock", "planter", "tin"]
MANIFEST_FIELDS = [
    "factory_id",
    "factory_name",
    "region",
    "product_id",
    "title",
    "category",
    "price",
    "moq",
    "image",
    "material",
]
FACTORY_WORDS = ["Homeware", "Hardware", "Gifts", "Crafts", "Plastics", "Electronics", "Houseware"]
MATERIALS = ["ceramic", "steel", "plastic", "bamboo", "glass", "fabric"]


@dataclass(frozen=True)
class Design:
    seed: int
    palette: tuple[tuple[int, int, int], ...]


def _colour(rng: random.Random, dark: bool = False) -> tuple[int, int, int]:
    lo, hi = (20, 140) if dark else (60, 255)
    return (rng.randint(lo, hi), rng.randint(lo, hi), rng.randint(lo, hi))


def factory_palette(seed: int) -> tuple[tuple[int, int, int], ...]:
    rng = random.Random(seed)
    return tuple(_colour(rng, dark=i % 2 == 1) for i in range(4))


def render_product(design: Design, view: int = 0, size: int = 640) -> Image.Image:
    rng = random.Random(design.seed)
    body_colour, accent = rng.choice(design.palette), _colour(rng)
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    mask = Image.new("L", (size, size), 0)
    box = _body_box(rng, size)
    _draw_body(ImageDraw.Draw(mask), rng, box, fill=255)
    body = Image.new("RGBA", (size, size), (*body_colour, 255))
    _draw_pattern(ImageDraw.Draw(body), rng, size, accent)
    layer.paste(body, mask=mask)
    _draw_fittings(ImageDraw.Draw(layer), rng, box, design.palette)
    view_rng = random.Random(design.seed * 31 + view)
    background = _background(view_rng, size) if view else Image.new("RGB", (size, size), (246, 246, 244))
    if view:
        scale = view_rng.uniform(0.75, 0.9)
        layer = layer.rotate(view_rng.uniform(-15, 15), resample=Image.Resampling.BICUBIC)
        layer = layer.resize((int(size * scale),) * 2, Image.Resampling.BICUBIC)
    offset = ((size - layer.width) // 2, (size - layer.height) // 2)
    background.paste(layer, offset, mask=layer)
    return background


def _body_box(rng: random.Random, size: int) -> tuple[int, int, int, int]:
    w, h = rng.uniform(0.35, 0.7) * size, rng.uniform(0.35, 0.75) * size
    cx, cy = size / 2 + rng.uniform(-0.05, 0.05) * size, size / 2 + rng.uniform(-0.05, 0.05) * size
    return int(cx - w / 2), int(cy - h / 2), int(cx + w / 2), int(cy + h / 2)


def _draw_body(draw: ImageDraw.ImageDraw, rng: random.Random, box: tuple[int, int, int, int], fill: int) -> None:
    kind = rng.choice(["ellipse", "rounded", "polygon", "trapezoid"])
    x0, y0, x1, y1 = box
    if kind == "ellipse":
        draw.ellipse(box, fill=fill)
    elif kind == "rounded":
        draw.rounded_rectangle(box, radius=int(min(x1 - x0, y1 - y0) * rng.uniform(0.05, 0.3)), fill=fill)
    elif kind == "trapezoid":
        inset = (x1 - x0) * rng.uniform(0.1, 0.3)
        top_wide = rng.random() < 0.5
        corners4 = (
            [(x0 + inset, y0), (x1 - inset, y0), (x1, y1), (x0, y1)]
            if not top_wide
            else [(x0, y0), (x1, y0), (x1 - inset, y1), (x0 + inset, y1)]
        )
        draw.polygon(corners4, fill=fill)
    else:
        cx, cy, corners = (x0 + x1) / 2, (y0 + y1) / 2, rng.randint(5, 9)
        points = []
        for i in range(corners):
            radius = rng.uniform(0.7, 1.0)
            angle = 2 * math.pi * i / corners
            points.append(
                (cx + radius * (x1 - x0) / 2 * math.cos(angle), cy + radius * (y1 - y0) / 2 * math.sin(angle))
            )
        draw.polygon(points, fill=fill)


def _draw_pattern(draw: ImageDraw.ImageDraw, rng: random.Random, size: int, colour: tuple[int, int, int]) -> None:
    kind = rng.choice(["stripes", "dots", "checks", "bands", "zigzag", "plain"])
    step = rng.randint(size // 24, size // 8)
    if kind == "stripes":
        for x in range(-size, size * 2, step * 2):
            draw.polygon([(x, 0), (x + step, 0), (x + step + size // 2, size), (x + size // 2, size)], fill=colour)
    elif kind == "dots":
        radius = step // 3 + 2
        for y in range(0, size, step):
            for x in range((y // step % 2) * step // 2, size, step):
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    elif kind == "checks":
        for y in range(0, size, step):
            for x in range(0, size, step):
                if (x // step + y // step) % 2:
                    draw.rectangle((x, y, x + step, y + step), fill=colour)
    elif kind == "bands":
        for y in range(rng.randint(0, step), size, step * 3):
            draw.rectangle((0, y, size, y + step), fill=colour)
    elif kind == "zigzag":
        for y in range(0, size, step * 2):
            points = [(x, y + (step if (x // step) % 2 else 0)) for x in range(0, size + step, step)]
            draw.line(points, fill=colour, width=max(3, step // 3))


def _draw_fittings(
    draw: ImageDraw.ImageDraw,
    rng: random.Random,
    box: tuple[int, int, int, int],
    palette: tuple[tuple[int, int, int], ...],
) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    for _ in range(rng.randint(1, 3)):
        colour, kind = rng.choice(palette), rng.choice(["handle", "lid", "knob", "label", "base"])
        if kind == "handle":
            handle_box = (x1 - w * 0.15, y0 + h * 0.2, x1 + w * 0.25, y0 + h * 0.7)
            draw.arc(handle_box, -90, 90, fill=colour, width=max(4, w // 18))
        elif kind == "lid":
            draw.rectangle((x0 + w * 0.1, y0 - h * 0.08, x1 - w * 0.1, y0 + h * 0.02), fill=colour)
        elif kind == "knob":
            cx, cy, r = x0 + w * rng.uniform(0.3, 0.7), y0 + h * rng.uniform(0.3, 0.7), w * rng.uniform(0.05, 0.14)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour, outline=(20, 20, 20), width=3)
        elif kind == "label":
            draw.rectangle(
                (x0 + w * 0.25, y0 + h * 0.4, x1 - w * 0.25, y0 + h * 0.6),
                fill=(250, 250, 250),
                outline=colour,
                width=4,
            )
        else:
            draw.rectangle((x0 - w * 0.05, y1 - h * 0.05, x1 + w * 0.05, y1 + h * 0.04), fill=colour)


def _background(rng: random.Random, size: int) -> Image.Image:
    top, bottom = _colour(rng), _colour(rng)
    gradient = Image.linear_gradient("L").resize((size, size))
    top_image, bottom_image = Image.new("RGB", (size, size), top), Image.new("RGB", (size, size), bottom)
    background = Image.composite(top_image, bottom_image, gradient)
    return background.filter(ImageFilter.GaussianBlur(2))


def write_catalogue(
    directory: Path,
    *,
    factories: int = 6,
    products_per_factory: int = 6,
    views: int = 2,
    size: int = 640,
    seed: int = 7,
    quality: int = 88,
) -> Path:
    """Write JPEGs under directory/images and directory/manifest.csv; returns the manifest path."""
    images_dir = directory / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for f in range(factories):
        factory_id, palette = f"F{f + 1:03d}", factory_palette(seed * 1000 + f)
        region = REGIONS[f % len(REGIONS)]
        factory_name = f"{region} {FACTORY_WORDS[f % len(FACTORY_WORDS)]} Co. {f + 1}"
        for p in range(products_per_factory):
            product_id = f"{factory_id}-P{p + 1:03d}"
            rng = random.Random(f"{seed}:{product_id}")
            category, material = rng.choice(CATEGORIES), rng.choice(MATERIALS)
            price, moq = f"{rng.uniform(0.5, 40):.2f}", str(rng.choice([50, 100, 300, 500, 1000]))
            design = Design(seed=rng.randrange(2**31), palette=palette)
            for view in range(1 if p % 3 == 2 else views):  # some products have a single photo
                name = f"{product_id}-{view + 1}.jpg"
                render_product(design, view, size).save(images_dir / name, quality=quality)
                rows.append(
                    {
                        "factory_id": factory_id,
                        "factory_name": factory_name,
                        "region": region,
                        "product_id": product_id,
                        "title": f"{material.title()} {category}",
                        "category": category,
                        "price": price,
                        "moq": moq,
                        "image": f"images/{name}",
                        "material": material,
                    }
                )
    manifest = directory / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return manifest
