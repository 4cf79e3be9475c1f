"""Search-quality evaluation: competitor-style queries built from a catalogue, run through the real search.

A seller's photo is rarely the factory's clean shot: each query is a catalogue image put through one
transform (transforms.py). Photos of products the catalogue does not have must get "no confident match".
The figures are those a seller sees with the default search, which shows confident matches only:

- default top-1: the first confident factory is the right one;
- weak top-1 and recall@5: the right factory first, or in the first five, weak matches included;
- confident wrong: a confident answer naming another factory;
- unknown confident: a product the catalogue lacks answered confidently, by match level;
- reliability: per band of top similarity, the share of answers (weak included) naming the right factory.
"""

import csv
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.calibration.transforms import TRANSFORMS, competitor_photo
from app.catalog.models import Image as ImageRow
from app.search.options import QueryPhoto, SearchOptions
from app.search.pipeline import SearchService
from app.search.scoring import Hit

__all__ = ["TRANSFORMS", "competitor_photo"]
BANDS = (0.0, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 1.01)
TWIN_SIDE = 64
TWIN_LEVELS = 40  # of 255, in any channel: anti-aliasing and JPEG stay below it, a skin tone's change does not
TWIN_SHARE = 0.01


@dataclass
class Query:
    product_id: str
    factory_id: str
    image: Path
    category: str | None = None


@dataclass
class Outcome:
    default_top1: bool
    weak_top1: bool
    recall5: bool
    image_recall10: bool
    confident: bool
    confident_wrong: bool
    level: str  # the first confident factory's best match level, or "none"
    top_similarity: float
    latency_ms: float
    category_right: bool | None = None  # the likeliest category is the product's (None: it has none)
    product_id: str = ""  # the product queried and the transform it went through (filled in by evaluate)
    transform: str = ""
    answer: str = ""  # the first factory's best match, with its evidence (describe)
    runner_up: str = ""  # the second factory's best match: how close another factory came
    own: str = ""  # the query's own product's best candidate among those verified, with its evidence


@dataclass
class Evaluation:
    by_transform: dict[str, list[Outcome]] = field(default_factory=dict)
    unknown: list[Outcome] = field(default_factory=list)  # products the catalogue does not have
    # Unknown product → the catalogue product drawn the same, or as its mirror (twins()): no verdict that takes
    # a mirrored photo for its product can tell them apart, so they are reported beside the rest, not hidden.
    twins: dict[str, str] = field(default_factory=dict)
    # Queried catalogue product → another factory's product drawn the same, or as its mirror: a copy of it
    # answered with that factory is counted wrong, though no photo could tell the two apart.
    copy_twins: dict[str, str] = field(default_factory=dict)

    def unknown_confident(self, without_twins: bool = False) -> float:
        judged = [o for o in self.unknown if not (without_twins and o.product_id in self.twins)]
        return sum(o.confident for o in judged) / max(len(judged), 1)

    def without_copy_twins(self) -> tuple[int, float, float]:
        """(copies judged, default top-1, confident wrong) over the copies of products without a twin."""
        judged = [o for o in self.known if o.product_id not in self.copy_twins]
        n = max(len(judged), 1)
        return len(judged), sum(o.default_top1 for o in judged) / n, sum(o.confident_wrong for o in judged) / n

    @property
    def known(self) -> list[Outcome]:
        return [o for v in self.by_transform.values() for o in v]

    def rows(self) -> list[tuple[str, int, float, float, float, float, float]]:
        """(transform, queries, default top-1, weak top-1, recall@5, image recall@10, confident wrong)."""
        groups = [*self.by_transform.items(), ("overall", self.known)]
        return [(name, len(o), *_rates(o)) for name, o in groups]

    def unknown_levels(self) -> Counter[str]:
        return Counter(o.level for o in self.unknown if o.confident)

    def reliability(self) -> list[tuple[float, float, int, float]]:
        """(band low, band high, answers, share right) by top similarity; unknown products' answers are wrong."""
        answers = [(o.top_similarity, o.weak_top1) for o in self.known] + [
            (o.top_similarity, False) for o in self.unknown
        ]
        rows = []
        for low, high in itertools.pairwise(BANDS):
            inside = [right for similarity, right in answers if low <= similarity < high]
            if inside:
                rows.append((low, min(high, 1.0), len(inside), sum(inside) / len(inside)))
        return rows

    def category_top1(self, outcomes: list[Outcome]) -> float | None:
        judged = [o.category_right for o in outcomes if o.category_right is not None]
        return sum(judged) / len(judged) if judged else None

    def latencies(self) -> np.ndarray:
        return np.array([o.latency_ms for o in self.known + self.unknown])


def _rates(outcomes: list[Outcome]) -> tuple[float, float, float, float, float]:
    n = max(len(outcomes), 1)
    return (
        sum(o.default_top1 for o in outcomes) / n,
        sum(o.weak_top1 for o in outcomes) / n,
        sum(o.recall5 for o in outcomes) / n,
        sum(o.image_recall10 for o in outcomes) / n,
        sum(o.confident_wrong for o in outcomes) / n,
    )


def read_queries(manifest: Path) -> list[Query]:
    """Each product's first photo, image paths resolved against the manifest's folder."""
    with manifest.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if "://" not in row["image"]]
    first: dict[str, Query] = {}
    for row in rows:
        image = Path(row["image"]) if Path(row["image"]).is_absolute() else manifest.parent / row["image"]
        query = Query(row["product_id"], row["factory_id"], image.resolve(), row.get("category") or None)
        first.setdefault(row["product_id"], query)
    return list(first.values())


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
    held_queries = [q for q in read_queries(manifest) if q.product_id in held]
    return target, held_queries


def twins(
    unknown: list[Query], catalogue: list[Query], side: int = TWIN_SIDE, other_factories: bool = False
) -> dict[str, str]:
    """The unknown products whose photo is drawn as a catalogue product's is, or as its mirror: at `side`
    pixels, at most TWIN_SHARE of the pixels drawn in either differ by more than TWIN_LEVELS in a channel. An
    emoji set has both (a person walking, and the same walking the other way; a clock at ten, and at two).
    With `other_factories`, the queries are catalogue products themselves, and only another factory's products
    count: a copy of such a product names either factory with the same right."""
    if not unknown or not catalogue:
        return {}
    shelf, drawn = _thumbs(catalogue, side)
    factories = np.array([q.factory_id for q in catalogue])
    found = {}
    for query in unknown:
        (thumb,), (ink,) = _thumbs([query], side)
        others = factories != query.factory_id if other_factories else np.ones(len(catalogue), bool)
        for picture, mask in ((thumb, ink), (thumb[:, ::-1], ink[:, ::-1])):
            differing = (np.abs(shelf - picture).max(axis=3) > TWIN_LEVELS).sum(axis=(1, 2))
            share = np.where(others, differing / np.maximum((drawn | mask).sum(axis=(1, 2)), 1), np.inf)
            if share.min() <= TWIN_SHARE:
                found[query.product_id] = catalogue[int(share.argmin())].product_id
                break
    return found


def _thumbs(queries: list[Query], side: int) -> tuple[np.ndarray, np.ndarray]:
    """The photos at side x side (int16 RGB), and where each is drawn (away from its border's colour)."""
    thumbs = np.stack(
        [
            np.asarray(PILImage.open(q.image).convert("RGB").resize((side, side), PILImage.Resampling.BILINEAR))
            for q in queries
        ]
    ).astype(np.int16)
    border = np.median(np.concatenate([thumbs[:, 0], thumbs[:, -1], thumbs[:, :, 0], thumbs[:, :, -1]], axis=1), axis=1)
    return thumbs, np.abs(thumbs - border[:, None, None, :].astype(np.int16)).max(axis=3) > TWIN_LEVELS


def catalogue_queries(manifest: Path, count: int, seed: int) -> list[Query]:
    queries = read_queries(manifest)
    return random.Random(seed).sample(queries, min(count, len(queries)))


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
    """One query through the real search path (crops, batching, FAISS, verification, ranking). Weak matches
    are included, so that one run gives both what the default search shows (its confident factories) and
    where the right factory ranks among all candidates."""
    started = time.perf_counter()
    result = searcher.search.run([QueryPhoto(data)], None, SearchOptions(top_k=10, include_weak=True))
    latency = (time.perf_counter() - started) * 1000
    source_ids = searcher.source_ids(query.image)
    factories = [f.factory_id for f in result.factories]
    confident = [f for f in result.factories if f.confident]
    hits = sorted((m for f in result.factories for m in f.matches), key=lambda m: -m.rank_score)[:10]
    top = result.factories[0].matches[0].similarity if result.factories else 0.0
    likeliest = result.categories[0].category if result.categories else None
    return Outcome(
        default_top1=bool(confident) and confident[0].factory_id == query.factory_id,
        weak_top1=factories[:1] == [query.factory_id],
        recall5=query.factory_id in factories[:5],
        image_recall10=any(m.image_id in source_ids for m in hits),
        confident=bool(confident),
        confident_wrong=bool(confident) and confident[0].factory_id != query.factory_id,
        level=confident[0].matches[0].level.value if confident else "none",
        top_similarity=top,
        latency_ms=latency,
        category_right=None if query.category is None else likeliest == query.category,
        answer=describe(result.factories[0].matches[0]) if result.factories else "",
        runner_up=describe(result.factories[1].matches[0]) if len(result.factories) > 1 else "",
        own=next((describe(hit) for hit in result.evidence if hit.product_id == query.product_id), ""),
    )


def describe(hit: Hit) -> str:
    """A candidate's level and the measurements behind it: what tells why a query was missed."""
    text = f"{hit.product_id} {hit.level.value} similarity {hit.similarity:.3f} score {hit.rank_score:.3f}"
    if (checked := hit.verification) is None:
        return text + " unchecked"
    compared = checked.comparison
    return (
        f"{text} inliers {checked.inliers} agreement {checked.agreement:.2f} largest {compared.largest:.4f} "
        f"different {compared.different:.3f} strokes {compared.strokes:.3f} visible {compared.visible:.2f} "
        f"occluded {compared.occluded:.2f} colour {'ok' if compared.colour_ok else 'off'}"
        + (" mirrored" if checked.mirrored else "")
    )


def evaluate(
    searcher: Searcher, queries: list[Query], unknown: list[Query], transforms: list[str], seed: int
) -> Evaluation:
    """Each query through every transform; each unknown product's photo through one transform, in turn."""
    evaluation = Evaluation()
    for name in transforms:
        evaluation.by_transform[name] = [_run(searcher, q, name, seed) for q in queries]
    for i, q in enumerate(unknown):
        evaluation.unknown.append(_run(searcher, q, transforms[i % len(transforms)], seed))
    return evaluation


def _run(searcher: Searcher, query: Query, transform: str, seed: int) -> Outcome:
    outcome = run_query(searcher, query, competitor_photo(query.image, transform, seed))
    return replace(outcome, product_id=query.product_id, transform=transform)
