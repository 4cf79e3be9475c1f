"""Photos and/or text → query vectors → nearest catalogue images → verified, ranked factories.

One pipeline serves every kind of query:
- a photo is searched as several crops (the photo, its trimmed subject, its centre, or the caller's bbox);
  each catalogue image keeps its best similarity over the crops (the product is in one of them);
- several photos of one product (views) are fused per product: the mean over views of the product's best
  similarity in each view, so a product that matches every view beats one that matches a single view;
- a text (open_clip text tower) is searched alone, or added to each photo vector;
- "more like this" starts from an indexed image's stored vector.
The top products are then verified with local features (app/services/verify.py) and given match levels.
"""

import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Factory, Image, Product
from app.runtime import Runtime
from app.services.crops import parse_bbox, query_crops, scale_box
from app.services.errors import InvalidInputError, NotFoundError
from app.services.scoring import FactoryScore, Hit, best_per_product, rank_factories, with_evidence
from app.services.search_options import QueryPhoto, SearchOptions, allowed_image_ids, check_paging
from app.services.verify import QueryFeatures, verify
from embeddings import TextNotSupported
from embeddings.base import normalise

# How many nearest images feed the per-factory aggregation, per factory asked for. Generous, because
# one factory's many near matches should not crowd others out of the candidate pool.
POOL_PER_FACTORY = 20
MIN_POOL = 200
MAX_POOL = 4000
VERIFY_TOP = 30  # products checked with local features, best first
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


@dataclass
class _Query:
    """What the pipeline searches with: vectors grouped by view, and the photos to verify against."""

    views: list[np.ndarray]  # per view, (crops, dim)
    photos: list[PILImage.Image]  # per view, the photo (after bbox) for local features
    exclude_product: str | None = None
    gated: bool = True  # answer "no confident match" rather than weak candidates


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
    query = _photo_query(rt, photos, options.auto_crop, timings) if photos else _Query([], [])
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
    photo = rt.media.open(image.content_hash)
    query = _Query([vector[None, :]], [photo], exclude_product=image.product_id, gated=False)
    return _run(session, rt, query, options, started, {})


def _text_vector(rt: Runtime, text: str) -> np.ndarray:
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInputError(f"text is longer than {MAX_TEXT_CHARS} characters")
    if not rt.embedder.supports_text:
        raise TextNotSupported(f"the model {rt.embedder.name} has no text encoder; search with a photo")
    return rt.embedder.embed_text([text])[0]


def _photo_query(rt: Runtime, photos: list[QueryPhoto], auto_crop: bool, timings: dict[str, float]) -> _Query:
    clock = time.perf_counter()
    rt.batcher.wait_turn()
    views, pixels = [], []
    for photo in photos:
        loaded = rt.load_image(photo.data, max_bytes=rt.settings.max_upload_bytes)
        image = loaded.image
        if photo.bbox:
            original = (loaded.width, loaded.height)
            image = image.crop(scale_box(parse_bbox(photo.bbox, original), original, image.size))
        crops = query_crops(image, auto_crop=auto_crop and not photo.bbox)
        views.append(image)
        pixels.append(np.stack([rt.embedder.preprocess(crop) for crop in crops]))
    timings["decode"] = _ms(clock)
    clock = time.perf_counter()
    vectors = rt.batcher.embed_many(np.concatenate(pixels))
    timings["embed"] = _ms(clock)
    splits = np.cumsum([len(p) for p in pixels])[:-1]
    return _Query(np.split(vectors, splits), views)


def _run(
    session: Session, rt: Runtime, query: _Query, options: SearchOptions, started: float, timings: dict[str, float]
) -> SearchResult:
    clock = time.perf_counter()
    allowed = allowed_image_ids(session, options.filters)
    pool = min(MAX_POOL, max(MIN_POOL, (options.offset + options.top_k) * POOL_PER_FACTORY))
    scores, ids = rt.index.search(np.concatenate(query.views), pool, allowed)
    timings["search"] = _ms(clock)
    clock = time.perf_counter()
    hits, hashes = _fused_hits(session, query, scores, ids)
    timings["lookup"] = _ms(clock)
    clock = time.perf_counter()
    hits = _with_evidence(rt, query, hits, hashes if options.verify else None)
    timings["verify"] = _ms(clock)
    if options.min_score is not None:
        hits = [h for h in hits if h.rank_score >= options.min_score]
    ranked = rank_factories(hits)
    confident = any(f.confident for f in ranked)
    if query.gated and not options.include_weak:  # "no confident match" rather than weak candidates
        ranked = [f for f in ranked if f.confident]
    page = ranked[options.offset : options.offset + options.top_k]
    factories, products = _rows(session, page)
    took = _ms(started)
    gated = query.gated and not options.include_weak
    return SearchResult(page, len(ranked), confident, gated, factories, products, took, timings)


def _fused_hits(
    session: Session, query: _Query, scores: np.ndarray, ids: np.ndarray
) -> tuple[list[Hit], dict[int, str]]:
    """Per view, each image's best similarity over the crops; then products fused over the views.
    Also returns each found image's content hash, where its stored copy is."""
    per_view: list[dict[int, float]] = []
    start = 0
    for crops in query.views:
        best: dict[int, float] = {}
        for row_scores, row_ids in zip(
            scores[start : start + len(crops)], ids[start : start + len(crops)], strict=True
        ):
            for image_id, score in zip(row_ids.tolist(), row_scores.tolist(), strict=True):
                if image_id >= 0 and score > best.get(image_id, -2.0):
                    best[image_id] = score
        per_view.append(best)
        start += len(crops)
    wanted = set().union(*per_view)
    rows = session.execute(
        select(Image.id, Image.product_id, Image.content_hash, Product.factory_id)
        .join(Product)
        .where(Image.id.in_(wanted))
    ).all()
    # An id the database no longer has (deleted just now, or before a crash) is simply dropped.
    rows = [row for row in rows if row.product_id != query.exclude_product]
    return _fuse_views(per_view, rows), {row.id: row.content_hash for row in rows}


def _fuse_views(per_view: list[dict[int, float]], rows: list) -> list[Hit]:
    """One hit per product: its best image, with the mean over views of the product's best similarity
    (a view where the product did not come up counts with that view's lowest similarity in the pool)."""
    floors = [min(view.values(), default=0.0) for view in per_view]
    product_best: dict[str, list[float]] = {}
    product_image: dict[str, tuple[float, object]] = {}
    for row in rows:
        sims = product_best.setdefault(row.product_id, list(floors))
        for v, view in enumerate(per_view):
            if row.id in view:
                sims[v] = max(sims[v], view[row.id])
        top = max((view.get(row.id, -2.0) for view in per_view), default=-2.0)
        if row.product_id not in product_image or top > product_image[row.product_id][0]:
            product_image[row.product_id] = (top, row)
    hits = []
    for product_id, sims in product_best.items():
        row = product_image[product_id][1]
        hits.append(Hit(row.id, product_id, row.factory_id, float(np.mean(sims))))
    return best_per_product(hits)


def _with_evidence(rt: Runtime, query: _Query, hits: list[Hit], hashes: dict[int, str] | None) -> list[Hit]:
    """Match levels for every hit; the top VERIFY_TOP also checked with local features against each view."""
    near_duplicate = rt.near_duplicate_similarity
    if hashes is None or not query.photos:
        return [with_evidence(hit, None, near_duplicate) for hit in hits]
    views = [QueryFeatures(photo) for photo in query.photos]
    checked = []
    for rank, hit in enumerate(hits):
        verification = None
        if rank < VERIFY_TOP and (features := rt.features.get(hashes[hit.image_id])) is not None:
            results = [verify(view.features, features, view.mirrored) for view in views]
            verification = max(results, key=lambda r: (r.identical, r.inliers))
        checked.append(with_evidence(hit, verification, near_duplicate))
    return checked


def _rows(session: Session, page: list[FactoryScore]) -> tuple[dict[str, Factory], dict[str, Product]]:
    factory_ids = [f.factory_id for f in page]
    product_ids = [m.product_id for f in page for m in f.matches]
    factories = {f.id: f for f in session.scalars(select(Factory).where(Factory.id.in_(factory_ids)))}
    products = {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(product_ids)))}
    return factories, products


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)
