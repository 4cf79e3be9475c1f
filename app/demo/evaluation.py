"""Search-quality evaluation: competitor-style queries built from a catalogue, run through the real search.

A seller's photo is rarely the factory's clean shot. Each transform below imitates one way it differs; every
query is a catalogue image put through one transform with a fixed seed. A few products are held out of the
index: their photos must get "no confident match" (a product the catalogue does not have).
"""

import csv
import io
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.catalog.models import Image as ImageRow
from app.search.options import QueryPhoto, SearchOptions
from app.search.pipeline import SearchService

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


@dataclass
class Query:
    product_id: str
    factory_id: str
    image: Path


@dataclass
class Outcome:
    top1: bool
    recall5: bool
    image_recall10: bool
    confident: bool
    top_similarity: float
    latency_ms: float


@dataclass
class Evaluation:
    by_transform: dict[str, list[Outcome]] = field(default_factory=dict)
    unrelated: list[Outcome] = field(default_factory=list)  # held-out products' photos

    def rows(self) -> list[tuple[str, int, float, float, float, float]]:
        """(transform, queries, factory top-1, factory recall@5, image recall@10, confident share)."""
        groups = [*self.by_transform.items(), ("overall", [o for v in self.by_transform.values() for o in v])]
        return [(name, len(o), *_rates(o)) for name, o in groups]

    def latencies(self) -> np.ndarray:
        return np.array([o.latency_ms for v in self.by_transform.values() for o in v])


def _rates(outcomes: list[Outcome]) -> tuple[float, float, float, float]:
    n = max(len(outcomes), 1)
    return (
        sum(o.top1 for o in outcomes) / n,
        sum(o.recall5 for o in outcomes) / n,
        sum(o.image_recall10 for o in outcomes) / n,
        sum(o.confident for o in outcomes) / n,
    )


def split_manifest(manifest: Path, target: Path, holdout: int, seed: int) -> tuple[Path, list[Query]]:
    """Write the manifest without `holdout` products (image paths made absolute); return it and the
    held-out products' first photos."""
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames or [], list(reader)
    for row in rows:
        if "://" not in row["image"]:
            row["image"] = str((manifest.parent / row["image"]).resolve())
    products = sorted({row["product_id"] for row in rows})
    held = set(random.Random(seed).sample(products, min(holdout, len(products) // 10)))
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(row for row in rows if row["product_id"] not in held)
    return target, _first_photos([row for row in rows if row["product_id"] in held])


def catalogue_queries(manifest: Path, count: int, seed: int) -> list[Query]:
    with manifest.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if "://" not in row["image"]]
    queries = _first_photos(rows)
    return random.Random(seed).sample(queries, min(count, len(queries)))


def _first_photos(rows: list[dict[str, str]]) -> list[Query]:
    first: dict[str, Query] = {}
    for row in rows:
        first.setdefault(row["product_id"], Query(row["product_id"], row["factory_id"], Path(row["image"])))
    return list(first.values())


@dataclass(frozen=True)
class Searcher:
    """What the evaluation runs queries against: the search service, and the catalogue to find each query's
    source image in."""

    search: SearchService
    sessions: sessionmaker[Session]

    def source_ids(self, image: Path) -> set[int]:
        with self.sessions() as session:
            return set(session.scalars(select(ImageRow.id).where(ImageRow.source == str(image))))


def run_query(searcher: Searcher, query: Query, data: bytes) -> Outcome:
    """One query through the real search path (crops, batching, FAISS, verification, ranking)."""
    started = time.perf_counter()
    result = searcher.search.run([QueryPhoto(data)], None, SearchOptions(top_k=10, include_weak=True))
    latency = (time.perf_counter() - started) * 1000
    source_ids = searcher.source_ids(query.image)
    factories = [f.factory_id for f in result.factories]
    hits = sorted((m for f in result.factories for m in f.matches), key=lambda m: -m.rank_score)[:10]
    top = result.factories[0].matches[0].similarity if result.factories else 0.0
    return Outcome(
        top1=factories[:1] == [query.factory_id],
        recall5=query.factory_id in factories[:5],
        image_recall10=any(m.image_id in source_ids for m in hits),
        confident=result.confident_match,
        top_similarity=top,
        latency_ms=latency,
    )


def evaluate(
    searcher: Searcher, queries: list[Query], unrelated: list[Query], transforms: list[str], seed: int
) -> Evaluation:
    evaluation = Evaluation()
    for name in transforms:
        evaluation.by_transform[name] = [run_query(searcher, q, competitor_photo(q.image, name, seed)) for q in queries]
    for i, q in enumerate(unrelated):
        name = transforms[i % len(transforms)]
        evaluation.unrelated.append(run_query(searcher, q, competitor_photo(q.image, name, seed)))
    return evaluation
