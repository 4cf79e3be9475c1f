"""Photos and/or text → query vectors → nearest catalogue images → verified, ranked factories.

One pipeline serves every kind of query:
- a photo is searched alone first; only when that finds no clear match are its crops (straightened, trimmed
  subject), where it has any, searched too, in a second pass; each catalogue image keeps its best similarity over
  the crops (the product is in one of them). A caller's bbox replaces the photo by that box;
- several photos of one product (views) are fused per product (fusion.py);
- a text (open_clip text tower) is searched alone, or added to each photo vector;
- "more like this" starts from an indexed image's stored vector.
The top products are then verified with local features (verify.py) and given match levels (scoring.py).
"""

import time
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image as PILImage

from app.catalog.types import FactoryInfo, ProductInfo
from app.core.errors import InvalidInputError
from app.search.categories import NEIGHBOURS, CategoryGuess, blend, neighbour_vote, text_match
from app.search.crops import parse_bbox, query_crops, scale_box, subject_boxes, zoomed_out
from app.search.evidence import VERIFY_TOP, Checked, Evidence
from app.search.fusion import ImageRef, best_per_image, fuse_views
from app.search.lookup import CatalogueReader, SearchLookup
from app.search.options import QueryPhoto, SearchOptions, check_paging
from app.search.scoring import FactoryScore, Hit, MatchLevel, Thresholds, rank_factories, with_evidence
from app.search.verify import FeatureCache, QueryFeatures
from embeddings import ImageDecoder, ModelScheduler, Preprocess, TextNotSupported, Ticket, normalise
from index import VectorFilter, VectorIndex

# How many nearest images feed the per-factory aggregation, per factory asked for. Generous, because
# one factory's many near matches should not crowd others out of the candidate pool.
POOL_PER_FACTORY = 20
MIN_POOL = 200
MAX_POOL = 4000
# An identical top match with pixel agreement above this ends the search without crops. In scripts/evaluate.py
# that kept factory top-1 as searching every crop did (0.983 on 640 queries), with 87% of catalogue queries
# answered in one pass; ending whenever the top factory was confident at all lost 1.3 points on padded photos.
SETTLED_AGREEMENT = 0.95
MAX_VIEWS = 8
MAX_TEXT_CHARS = 500
CATEGORY_CACHE = 2000  # category names kept through the text tower


@dataclass(frozen=True)
class SearchPolicy:
    max_top_k: int  # the largest page a caller may ask for
    thresholds: Thresholds  # what each match level requires (shipped defaults, or the catalogue's calibration)
    max_subjects: int = 4  # products of one photo answered separately, at most
    verify_span: float | None = None  # candidates checked down to this far below the best similarity (evidence.py)


@dataclass
class SearchResult:
    factories: list[FactoryScore]  # the requested page
    total: int  # factories that passed gating and min_score, over all pages
    confident_match: bool
    gated: bool  # weak candidates were left out
    factory_rows: dict[str, FactoryInfo]
    product_rows: dict[str, ProductInfo]
    took_ms: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The candidates with their evidence, best similarity first (the first VERIFY_TOP checked with local
    # features): what calibration replays under other thresholds.
    evidence: list[Hit] = field(default_factory=list)
    thresholds: str = "default"  # where the match levels' thresholds came from: "default" or "catalogue"
    categories: list[CategoryGuess] = field(default_factory=list)  # the photo's likely catalogue categories


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
    verified: Checked = field(default_factory=dict)  # the candidates' local-feature checks so far
    hits: list[Hit] = field(default_factory=list)  # the latest pass's candidates, with their evidence
    photo_only: bool = False  # a photo query without words: its category names may be read by the text tower
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


class SearchService:
    def __init__(
        self,
        *,
        scheduler: ModelScheduler,
        preprocess: Preprocess,
        decoder: ImageDecoder,
        index: VectorIndex,
        lookup: SearchLookup,
        features: FeatureCache,
        verify_pool: Executor,
        policy: SearchPolicy,
    ) -> None:
        self.scheduler = scheduler
        self.preprocess = preprocess
        self.decoder = decoder
        self.index = index
        self.lookup = lookup
        self.verify_pool = verify_pool
        self.policy = policy
        self.evidence = Evidence(features, verify_pool)
        self._category_vectors: dict[str, np.ndarray] = {}

    @property
    def thresholds(self) -> Thresholds:
        return self.policy.thresholds

    def use_thresholds(self, thresholds: Thresholds) -> None:
        """From the next search on (a calibration just made); searches under way finish with the old ones."""
        self.policy = replace(self.policy, thresholds=thresholds)

    def run(
        self,
        photos: list[QueryPhoto],
        text: str | None,
        options: SearchOptions,
        ticket: Ticket | None = None,
        exclude_product: str | None = None,
    ) -> SearchResult:
        """Search with photos (several: views of one product), text, or both. The ticket is the search's place
        with the scheduler since its request arrived. `exclude_product` answers as if the catalogue lacked it
        (calibration's unknown products)."""
        started, timings = time.perf_counter(), dict[str, float]()
        check_paging(options, self.policy.max_top_k)
        if not photos and not text:
            raise InvalidInputError("give a photo, a text, or both")
        if len(photos) > MAX_VIEWS:
            raise InvalidInputError(f"at most {MAX_VIEWS} photos of one product per search, got {len(photos)}")
        text_vector = self._text_vector(text) if text else None
        # With text, every crop goes in at once: the words, not the lack of a confident match, decide what it lists.
        if photos:
            query = self._photo_query(photos, options, text_vector is not None, timings, ticket)
        else:
            query = _Query([], [])
        query.exclude_product = exclude_product
        query.photo_only = text_vector is None
        if text_vector is not None:
            # Text moves the query toward the words; text-to-image similarities are on another scale than
            # image-to-image ones, so such searches list candidates rather than claim confident matches.
            query.views = [normalise(v + text_vector) for v in query.views] or [text_vector[None, :]]
            query.gated = False
        return self._run(query, options, started, timings)

    def similar(self, image_id: int, options: SearchOptions) -> SearchResult:
        """More like this: other products that look like a catalogue image."""
        started = time.perf_counter()
        check_paging(options, self.policy.max_top_k)
        with self.lookup.reader() as reader:
            source = reader.source_image(image_id)
        try:
            photos = [self.evidence.features.picture(source.content_hash)]
        except OSError:  # its stored copy is gone: the hits go unverified
            photos = []
        query = _Query([source.vector[None, :]], photos, exclude_product=source.product_id, gated=False)
        return self._run(query, options, started, {})

    def subjects(self, data: bytes) -> list[tuple[float, float, float, float]]:
        """The products seen in a photo, largest first, as x0, y0, x1, y1 fractions of its size: what a
        search's bbox takes, to search one of them."""
        with self.scheduler.cpu_turn():
            image = self.decoder.decode(data).image
            width, height = image.size
            return [
                (round(x0 / width, 4), round(y0 / height, 4), round(x1 / width, 4), round(y1 / height, 4))
                for x0, y0, x1, y1 in subject_boxes(image)
            ]

    def per_subject(
        self, photo: bytes, text: str | None, options: SearchOptions, ticket: Ticket | None = None
    ) -> list[tuple[tuple[float, float, float, float], SearchResult]]:
        """A photo of several products answered for each of them (largest first), each with its box."""
        boxes = self.subjects(photo)[: self.policy.max_subjects]
        answers = []
        for box in boxes:
            bbox = None if box == (0.0, 0.0, 1.0, 1.0) else ",".join(str(v) for v in box)
            answers.append((box, self.run([QueryPhoto(photo, bbox)], text, options, ticket)))
            ticket = None  # the request's place with the scheduler served its first search
        return answers

    def _text_vector(self, text: str) -> np.ndarray:
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidInputError(f"text is longer than {MAX_TEXT_CHARS} characters")
        model = self.scheduler.model
        if model is None or not model.supports_text:
            name = model.name if model else "loaded"
            raise TextNotSupported(f"the model {name} has no text encoder; search with a photo")
        return self.scheduler.embed_text(text)

    def _photo_query(
        self,
        photos: list[QueryPhoto],
        options: SearchOptions,
        crops_at_once: bool,
        timings: dict[str, float],
        ticket: Ticket | None,
    ) -> _Query:
        """Each photo decoded and embedded; its automatic crops embedded too, or held back for a second pass.
        Where the model leaves cores free, the photos' local features are extracted meanwhile."""
        with self.scheduler.cpu_turn():
            with _timed(timings, "decode"):
                images, now, later = [], [], []
                for photo in photos:
                    loaded = self.decoder.decode(photo.data)
                    image = loaded.image
                    if photo.bbox:
                        original = (loaded.width, loaded.height)
                        image = image.crop(scale_box(parse_bbox(photo.bbox, original), original, image.size))
                    auto = options.auto_crop and not photo.bbox
                    images.append(image)
                    now.append(query_crops(image, auto_crop=auto and crops_at_once))
                    later.append(auto and not crops_at_once)
            pixels = self._pixels(now, timings)
        query = _Query([], images, crop_later=later)
        if options.verify and not self.scheduler.policy.exclusive:
            query.local_features(self.verify_pool)
        query.views = self._embed(pixels, now, timings, ticket)
        return query

    def _pixels(self, crops: list[list[PILImage.Image]], timings: dict[str, float]) -> np.ndarray:
        with _timed(timings, "preprocess"):
            return np.stack([self.preprocess(crop) for view in crops for crop in view])

    def _embed(
        self, pixels: np.ndarray, crops: list[list[PILImage.Image]], timings: dict[str, float], ticket: Ticket | None
    ) -> list[np.ndarray]:
        """Per view, its crops' vectors; every crop of every view in one forward pass. Never inside a cpu_turn."""
        with _timed(timings, "embed"):
            vectors = self.scheduler.embed(pixels, ticket)
        return np.split(vectors, np.cumsum([len(view) for view in crops])[:-1])

    def _run(self, query: _Query, options: SearchOptions, started: float, timings: dict[str, float]) -> SearchResult:
        with self.lookup.reader() as reader:
            with self.scheduler.cpu_turn():
                if self.index.filters_inside:  # Milvus filters inside its search, before the top k
                    allowed, where = None, reader.vector_filter(options.filters)
                else:  # FAISS searches among the ids the database says pass
                    allowed, where = reader.allowed_image_ids(options.filters), None
                if options.verify:  # extracted while FAISS searches, on the other core
                    query.local_features(self.verify_pool)
                ranked = self._ranked(reader, query, options, allowed, where, timings)
                # The photo alone found no clear match: the product may be framed, padded, tilted or cropped tight,
                # so its crops (where it has any) and the photo zoomed out are searched too, in one more forward
                # pass. A clear match (the usual case) costs one forward pass.
                second_pass = any(query.crop_later) and not settled(ranked)
                if second_pass:
                    with _timed(timings, "decode"):
                        crops = [
                            [*query_crops(photo, auto_crop=True)[1:], zoomed_out(photo)] if later else []
                            for photo, later in zip(query.photos, query.crop_later, strict=True)  # pragma: no mutate
                        ]
                    pixels = self._pixels(crops, timings)
            if second_pass:
                more = self._embed(pixels, crops, timings, None)
                query.views = [np.concatenate([done, new]) for done, new in zip(query.views, more, strict=True)]
                query.crop_later = [False for _ in query.views]
                with self.scheduler.cpu_turn():
                    ranked = self._ranked(reader, query, options, allowed, where, timings)
                timings["passes"] = 2
            confident = any(f.confident for f in ranked)
            gated = query.gated and not options.include_weak
            if gated:  # "no confident match" rather than weak candidates
                ranked = [f for f in ranked if f.confident]
            page = ranked[options.offset : options.offset + options.top_k]
            factories, products = reader.page_rows(
                [f.factory_id for f in page], [m.product_id for f in page for m in f.matches]
            )
            with _timed(timings, "categories"):
                categories = self._categories(query)
        shown = _still_there(page, factories, products)
        total = len(ranked) - (len(page) - len(shown))
        return SearchResult(
            shown,
            total,
            confident,
            gated,
            factories,
            products,
            _ms(started),
            timings,
            query.hits[:VERIFY_TOP],
            self.policy.thresholds.source,
            categories,
        )

    def _categories(self, query: _Query) -> list[CategoryGuess]:
        nearest = query.hits[: NEIGHBOURS * 3]  # several images per product at most
        # Read with the hits' products and factories (lookup.py): no query of its own.
        known = {hit.product_id: query.rows[hit.image_id].category for hit in nearest}
        vote = neighbour_vote(nearest, known)
        model = self.scheduler.model
        if not query.photo_only or model is None or not model.supports_text:
            return blend(vote, {})
        names = sorted({name for name in known.values() if name})
        photo = normalise(np.mean([view[0] for view in query.views], axis=0)[None, :])[0]
        return blend(vote, text_match(photo, names, self._category_vector))

    def _category_vector(self, name: str) -> np.ndarray:
        """A category's name through the text tower, once per name (the catalogue's categories are few)."""
        vector = self._category_vectors.get(name)
        if vector is None:
            if len(self._category_vectors) >= CATEGORY_CACHE:
                self._category_vectors.clear()
            vector = self._category_vectors[name] = self.scheduler.embed_text(f"a photo of a {name}")
        return vector

    def _ranked(
        self,
        reader: CatalogueReader,
        query: _Query,
        options: SearchOptions,
        allowed: np.ndarray | None,
        where: VectorFilter | None,
        timings: dict[str, float],
    ) -> list[FactoryScore]:
        """Search what FAISS has not seen yet, fuse everything found so far, verify and rank."""
        with _timed(timings, "search"):
            pending = query.unsearched()
            pool = min(MAX_POOL, max(MIN_POOL, (options.offset + options.top_k) * POOL_PER_FACTORY))
            scores, ids = self.index.search(np.concatenate(pending), pool, allowed, where)
            rows = iter(zip(scores, ids, strict=True))
            for found, vectors in zip(query.found, pending, strict=True):
                found.extend(next(rows) for _ in vectors)
        with _timed(timings, "lookup"):
            per_view = [best_per_image(found) for found in query.found]
            if wanted := set().union(*per_view) - query.rows.keys():
                query.rows.update((ref.id, ref) for ref in reader.image_refs(wanted))
            # An id the database no longer has (deleted just now, or before a crash) is simply dropped.
            refs = [ref for ref in query.rows.values() if ref.product_id != query.exclude_product]
            hits = fuse_views(per_view, refs)
        with _timed(timings, "verify"):
            if options.verify and query.photos:
                views = query.local_features(self.verify_pool)
                hits = self.evidence.add(
                    hits,
                    views,
                    query.rows,
                    query.verified,
                    self.thresholds,
                    exhaustive=options.verify_all,
                    span=self.policy.verify_span,
                )
            else:
                hits = [with_evidence(hit, None, self.thresholds) for hit in hits]
        query.hits = hits
        if options.min_score is not None:
            hits = [h for h in hits if h.rank_score >= options.min_score]
        return rank_factories(hits)


def _still_there(
    page: list[FactoryScore], factories: dict[str, FactoryInfo], products: dict[str, ProductInfo]
) -> list[FactoryScore]:
    """The page without what was deleted while the search ran: a product's matches, and a factory left with
    none."""
    shown = []
    for factory in page:
        matches = [hit for hit in factory.matches if hit.product_id in products]
        if matches and factory.factory_id in factories:
            shown.append(replace(factory, matches=matches) if len(matches) < len(factory.matches) else factory)
    return shown


def settled(ranked: list[FactoryScore]) -> bool:
    """The photo alone answered clearly: the top factory's best match is a near-duplicate by similarity, or a
    copy whose aligned pixels agree cleanly. A doubtful identical (a banner over it, few inliers), or a
    confident factory below a weak top one, leaves room for the crops to find better."""
    if not ranked or not ranked[0].confident:
        return False
    best = ranked[0].matches[0]
    clean = best.verification is not None and best.verification.agreement >= SETTLED_AGREEMENT
    return best.level == MatchLevel.NEAR_DUPLICATE or (best.level == MatchLevel.IDENTICAL and clean)


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
