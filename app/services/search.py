"""Photos and/or text → query vectors → nearest catalogue images → verified, ranked factories.

One pipeline serves every kind of query:
- a photo is searched alone first; only when that finds no clear match are its crops (straightened,
  trimmed subject, centre) searched too, in a second pass; each catalogue image keeps its best similarity over
  the crops (the product is in one of them). A caller's bbox replaces the photo by that box;
- several photos of one product (views) are fused per product: the mean over views of the product's best
  similarity in each view, so a product that matches every view beats one that matches a single view;
- a text (open_clip text tower) is searched alone, or added to each photo vector;
- "more like this" starts from an indexed image's stored vector.
The top products are then verified with local features (app/services/verify.py) and given match levels.
"""

import time
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Factory, Image, Product
from app.runtime import Runtime
from app.services.crops import parse_bbox, query_crops, scale_box
from app.services.errors import InvalidInputError, NotFoundError
from app.services.scoring import FactoryScore, Hit, MatchLevel, best_per_product, rank_factories, with_evidence
from app.services.search_options import QueryPhoto, SearchOptions, allowed_image_ids, check_paging
from app.services.verify import QueryFeatures, Verification, verify
from embeddings import TextNotSupported
from embeddings.base import normalise

# How many nearest images feed the per-factory aggregation, per factory asked for. Generous, because
# one factory's many near matches should not crowd others out of the candidate pool.
POOL_PER_FACTORY = 20
MIN_POOL = 200
MAX_POOL = 4000
VERIFY_TOP = 30  # products checked with local features, best first
# Of those, the first MIRROR_TOP are also tried mirrored when they fail. A mirrored copy barely moves the
# embedding: in scripts/evaluate.py, every mirrored identical of the query's own product that decided its
# ranking came up in the first 10 (the 12 beyond were other products); trying all 30 doubled the matching work.
MIRROR_TOP = 10
# An identical top match with pixel agreement above this ends the search without crops. In scripts/evaluate.py
# that kept factory top-1 as searching every crop did (0.983 on 640 queries), with 87% of catalogue queries
# answered in one pass; ending whenever the top factory was confident at all lost 1.3 points on padded photos.
SETTLED_AGREEMENT = 0.95
MAX_VIEWS = 8
MAX_TEXT_CHARS = 500


@dataclass
class SearchResult:
    factories: list[FactoryScore]  # the requested page
    total: int  # factories that passed gating and min_score, over all pages
    confident_match: bool
    gated: bool  # weak candidates were left out
    factory_rows: dict[str, Factory]
    product_rows: dict[str, Product]
    took_ms: float
    timings_ms: dict[str, float] = field(default_factory=dict)


class ImageRef(NamedTuple):
    """What ranking and verification need of a catalogue image."""

    id: int
    product_id: str
    content_hash: str
    factory_id: str


@dataclass
class _Query:
    """What the pipeline searches with, and what it has found so far (a search may take two passes)."""

    views: list[np.ndarray]  # per view, (crops, dim)
    photos: list[PILImage.Image]  # per view, the photo (after bbox) for local features
    exclude_product: str | None = None
    gated: bool = True  # answer "no confident match" rather than weak candidates
    crop_later: list[bool] = field(default_factory=list)  # per view: its crops are left for a second pass
    # Per view, per crop searched so far: FAISS's (scores, ids) row.
    found: list[list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=list)
    rows: dict[int, ImageRef] = field(default_factory=dict)  # image id → product, factory, content hash
    # Image id → its local-feature check, and whether the mirrored query was tried too.
    verified: dict[int, tuple[Verification | None, bool]] = field(default_factory=dict)
    _features: list[QueryFeatures] | None = None

    def unsearched(self) -> list[np.ndarray]:
        """Per view, the vectors FAISS has not seen yet."""
        self.found = self.found or [[] for _ in self.views]
        return [vectors[len(found) :] for vectors, found in zip(self.views, self.found, strict=True)]

    def local_features(self, pool: Executor | None = None) -> list[QueryFeatures]:
        """Per view, the photo's local features, extracted once however often they are needed (on `pool`, in
        the background, when the first call gives one)."""
        if self._features is None:
            self._features = [QueryFeatures(photo, pool) for photo in self.photos]
        return self._features


def search_photo(session: Session, rt: Runtime, data: bytes, top_k: int) -> SearchResult:
    """The plain case: one photo, default options."""
    return search(session, rt, [QueryPhoto(data)], None, SearchOptions(top_k=top_k))


def search(
    session: Session, rt: Runtime, photos: list[QueryPhoto], text: str | None, options: SearchOptions
) -> SearchResult:
    started, timings = time.perf_counter(), {}
    check_paging(options, rt.settings.max_top_k)
    if not photos and not text:
        raise InvalidInputError("give a photo, a text, or both")
    if len(photos) > MAX_VIEWS:
        raise InvalidInputError(f"at most {MAX_VIEWS} photos of one product per search, got {len(photos)}")
    text_vector = _text_vector(rt, text) if text else None
    # With text, every crop goes in at once: the words, not the lack of a confident match, decide what it lists.
    query = _photo_query(rt, photos, options.auto_crop, text_vector is not None, timings) if photos else _Query([], [])
    if text_vector is not None:
        # Text moves the query toward the words; text-to-image similarities are on another scale than
        # image-to-image ones, so such searches list candidates rather than claim confident matches.
        query.views = [normalise(v + text_vector) for v in query.views] or [text_vector[None, :]]
        query.gated = False
    return _run(session, rt, query, options, started, timings)


def search_similar(session: Session, rt: Runtime, image_id: int, options: SearchOptions) -> SearchResult:
    """More like this: other products that look like a catalogue image."""
    started = time.perf_counter()
    check_paging(options, rt.settings.max_top_k)
    image = session.get(Image, image_id)
    if image is None:
        raise NotFoundError(f"image {image_id} not found")
    vector = np.frombuffer(image.embedding, dtype="<f4").astype(np.float32)
    try:
        photos = [rt.media.open(image.content_hash)]
    except OSError:  # its stored copy is gone: the hits go unverified
        photos = []
    query = _Query([vector[None, :]], photos, exclude_product=image.product_id, gated=False)
    return _run(session, rt, query, options, started, {})


def _text_vector(rt: Runtime, text: str) -> np.ndarray:
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInputError(f"text is longer than {MAX_TEXT_CHARS} characters")
    if not rt.embedder.supports_text:
        raise TextNotSupported(f"the model {rt.embedder.name} has no text encoder; search with a photo")
    return rt.embedder.embed_text([text])[0]


def _photo_query(
    rt: Runtime, photos: list[QueryPhoto], auto_crop: bool, crops_at_once: bool, timings: dict[str, float]
) -> _Query:
    """Each photo decoded and embedded; its automatic crops embedded too, or held back for a second pass."""
    with rt.batcher.cpu_turn():
        with _timed(timings, "decode"):
            images, now, later = [], [], []
            for photo in photos:
                loaded = rt.load_image(photo.data, max_bytes=rt.settings.max_upload_bytes)
                image = loaded.image
                if photo.bbox:
                    original = (loaded.width, loaded.height)
                    image = image.crop(scale_box(parse_bbox(photo.bbox, original), original, image.size))
                auto = auto_crop and not photo.bbox
                images.append(image)
                now.append(query_crops(image, auto_crop=auto and crops_at_once))
                later.append(auto and not crops_at_once)
        pixels = _preprocess(rt, now, timings)
    return _Query(_embed(rt, pixels, now, timings), images, crop_later=later)


def _preprocess(rt: Runtime, crops: list[list[PILImage.Image]], timings: dict[str, float]) -> np.ndarray:
    with _timed(timings, "preprocess"):
        return np.stack([rt.embedder.preprocess(crop) for view in crops for crop in view])


def _embed(
    rt: Runtime, pixels: np.ndarray, crops: list[list[PILImage.Image]], timings: dict[str, float]
) -> list[np.ndarray]:
    """Per view, its crops' vectors; every crop of every view in one forward pass. Never inside a cpu_turn."""
    with _timed(timings, "embed"):
        vectors = rt.batcher.embed_many(pixels)
    return np.split(vectors, np.cumsum([len(view) for view in crops])[:-1])


def _run(
    session: Session, rt: Runtime, query: _Query, options: SearchOptions, started: float, timings: dict[str, float]
) -> SearchResult:
    with rt.batcher.cpu_turn():
        allowed = allowed_image_ids(session, options.filters)
        if options.verify:  # extracted while FAISS searches, on the other core
            query.local_features(rt.verification_pool)
        ranked = _ranked(session, rt, query, options, allowed, timings)
        # The photo alone found no clear match: the product may be framed, padded or part of a scene, so its
        # crops are searched too. A clear match (the usual case) costs one forward pass, not several.
        if second_pass := any(query.crop_later) and not _settled(rt, ranked):
            with _timed(timings, "decode"):
                crops = [
                    query_crops(photo, auto_crop=True)[1:] if later else []
                    for photo, later in zip(query.photos, query.crop_later, strict=True)
                ]
            pixels = _preprocess(rt, crops, timings)
    if second_pass:
        more = _embed(rt, pixels, crops, timings)
        query.views = [np.concatenate([done, new]) for done, new in zip(query.views, more, strict=True)]
        query.crop_later = [False for _ in query.views]
        with rt.batcher.cpu_turn():
            ranked = _ranked(session, rt, query, options, allowed, timings)
        timings["passes"] = 2
    confident = any(f.confident for f in ranked)
    gated = query.gated and not options.include_weak
    if gated:  # "no confident match" rather than weak candidates
        ranked = [f for f in ranked if f.confident]
    page = ranked[options.offset : options.offset + options.top_k]
    factories, products = _rows(session, page)
    return SearchResult(page, len(ranked), confident, gated, factories, products, _ms(started), timings)


def _settled(rt: Runtime, ranked: list[FactoryScore]) -> bool:
    """The photo alone answered clearly: the top factory's best match is a near-duplicate by similarity, or a
    copy whose aligned pixels agree cleanly. A doubtful identical (a banner over it, few inliers), or a
    confident factory below a weak top one, leaves room for the crops to find better."""
    if not ranked or not ranked[0].confident:
        return False
    best = ranked[0].matches[0]
    clean = best.verification is not None and best.verification.agreement >= SETTLED_AGREEMENT
    return best.similarity >= rt.near_duplicate_similarity or (best.level == MatchLevel.IDENTICAL and clean)


def _ranked(
    session: Session,
    rt: Runtime,
    query: _Query,
    options: SearchOptions,
    allowed: np.ndarray | None,
    timings: dict[str, float],
) -> list[FactoryScore]:
    """Search what FAISS has not seen yet, fuse everything found so far, verify and rank."""
    with _timed(timings, "search"):
        pending = query.unsearched()
        pool = min(MAX_POOL, max(MIN_POOL, (options.offset + options.top_k) * POOL_PER_FACTORY))
        scores, ids = rt.index.search(np.concatenate(pending), pool, allowed)
        rows = iter(zip(scores, ids, strict=True))
        for found, vectors in zip(query.found, pending, strict=True):
            found.extend(next(rows) for _ in vectors)
    with _timed(timings, "lookup"):
        hits = _fused_hits(session, query)
    with _timed(timings, "verify"):
        hits = _with_evidence(rt, query, hits, options.verify)
    if options.min_score is not None:
        hits = [h for h in hits if h.rank_score >= options.min_score]
    return rank_factories(hits)


def _fused_hits(session: Session, query: _Query) -> list[Hit]:
    """Per view, each image's best similarity over the crops; then products fused over the views."""
    per_view: list[dict[int, float]] = []
    for found in query.found:
        best: dict[int, float] = {}
        for row_scores, row_ids in found:
            for image_id, score in zip(row_ids.tolist(), row_scores.tolist(), strict=True):
                if image_id >= 0 and score > best.get(image_id, -2.0):
                    best[image_id] = score
        per_view.append(best)
    if wanted := set().union(*per_view) - query.rows.keys():
        statement = (
            select(Image.id, Image.product_id, Image.content_hash, Product.factory_id)
            .join(Product)
            .where(Image.id.in_(wanted))
        )
        # Core rows, kept as named tuples: the ORM's result machinery and Row attribute access cost as much as
        # the query itself (with the leaner fusing below: the lookup of 200 hits 9.9 -> 5.6 ms, 1M catalogue).
        query.rows.update((row[0], ImageRef._make(row)) for row in session.connection().execute(statement).all())
    # An id the database no longer has (deleted just now, or before a crash) is simply dropped.
    rows = [row for row in query.rows.values() if row.product_id != query.exclude_product]
    return _fuse_views(per_view, rows)


def _fuse_views(per_view: list[dict[int, float]], rows: list[ImageRef]) -> list[Hit]:
    """One hit per product: its best image, with the mean over views of the product's best similarity
    (a view where the product did not come up counts with that view's lowest similarity in the pool)."""
    floors = [min(view.values(), default=0.0) for view in per_view]
    product_sims: dict[str, list[float]] = {}
    product_image: dict[str, tuple[float, ImageRef]] = {}
    for row in rows:
        scores = [view.get(row.id, -2.0) for view in per_view]
        if (sims := product_sims.get(row.product_id)) is None:
            sims = product_sims[row.product_id] = list(floors)
        for v, score in enumerate(scores):
            if score > sims[v]:
                sims[v] = score
        top = max(scores, default=-2.0)
        if (best := product_image.get(row.product_id)) is None or top > best[0]:
            product_image[row.product_id] = (top, row)
    hits = []
    for product_id, sims in product_sims.items():
        row = product_image[product_id][1]
        hits.append(Hit(row.id, product_id, row.factory_id, sum(sims) / len(sims)))  # np.mean: 15 µs a call
    return best_per_product(hits)


def _with_evidence(rt: Runtime, query: _Query, hits: list[Hit], verify_hits: bool) -> list[Hit]:
    """Match levels for every hit; the top VERIFY_TOP also checked with local features against each view."""
    near_duplicate = rt.near_duplicate_similarity
    if not verify_hits or not query.photos:
        return [with_evidence(hit, None, near_duplicate) for hit in hits]
    # Checked already, unless only unmirrored and now ranked where the mirror is tried (a second pass).
    wanted = [
        (hit.image_id, rank < MIRROR_TOP)
        for rank, hit in enumerate(hits[:VERIFY_TOP])
        if (known := query.verified.get(hit.image_id)) is None or (rank < MIRROR_TOP and not known[1])
    ]
    views = query.local_features(rt.verification_pool)

    def check(image_id: int, mirror: bool) -> Verification | None:
        return _verify_views(rt, views, query.rows[image_id].content_hash, mirror)

    # Pairs are checked in parallel: OpenCV releases the GIL, and one search otherwise leaves a core idle.
    results = rt.verification_pool.map(check, *zip(*wanted, strict=True)) if wanted else []
    for (image_id, mirror), result in zip(wanted, results, strict=True):
        query.verified[image_id] = result, mirror
    checked = [with_evidence(hit, query.verified[hit.image_id][0], near_duplicate) for hit in hits[:VERIFY_TOP]]
    return checked + [with_evidence(hit, None, near_duplicate) for hit in hits[VERIFY_TOP:]]


def _verify_views(rt: Runtime, views: list[QueryFeatures], content_hash: str, mirror: bool) -> Verification | None:
    """The best check of a catalogue image against any view (mirrored too, if `mirror`); None when its stored
    copy cannot be read."""
    if (features := rt.features.get(content_hash)) is None:
        return None
    results = [verify(view.features, features, view.mirrored if mirror else None) for view in views]
    return max(results, key=lambda r: (r.identical, r.inliers))


def _rows(session: Session, page: list[FactoryScore]) -> tuple[dict[str, Factory], dict[str, Product]]:
    factory_ids = [f.factory_id for f in page]
    product_ids = [m.product_id for f in page for m in f.matches]
    factories = {f.id: f for f in session.scalars(select(Factory).where(Factory.id.in_(factory_ids)))}
    products = {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(product_ids)))}
    return factories, products


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Adds the block's milliseconds to the stage (a two-pass search passes through stages twice)."""
    clock = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(timings.get(stage, 0.0) + (time.perf_counter() - clock) * 1000, 2)
