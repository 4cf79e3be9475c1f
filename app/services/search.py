"""Photo → embedding → nearest catalogue images → ranked factories."""

import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Factory, Image, Product
from app.runtime import Runtime
from app.services.errors import InvalidInputError
from app.services.scoring import FactoryScore, Hit, rank_factories

# How many nearest images feed the per-factory aggregation, per factory asked for. Generous, because
# one factory's many near matches should not crowd others out of the candidate pool.
POOL_PER_FACTORY = 20
MIN_POOL = 200


@dataclass
class SearchResult:
    factories: list[FactoryScore]
    factory_rows: dict[str, Factory]
    product_rows: dict[str, Product]
    took_ms: float


def search_photo(session: Session, rt: Runtime, data: bytes, top_k: int) -> SearchResult:
    started = time.perf_counter()
    check_top_k(rt, top_k)
    rt.batcher.wait_turn()
    loaded = rt.load_image(data, max_bytes=rt.settings.max_upload_bytes)
    vector = rt.batcher.embed(rt.embedder.preprocess(loaded.image))
    return search_vector(session, rt, vector, top_k, started)


def check_top_k(rt: Runtime, top_k: int) -> None:
    if not 1 <= top_k <= rt.settings.max_top_k:
        raise InvalidInputError(f"top_k must be between 1 and {rt.settings.max_top_k}, got {top_k}")


def search_vector(session: Session, rt: Runtime, vector: np.ndarray, top_k: int, started: float) -> SearchResult:
    scores, ids = rt.index.search(vector[None, :], max(MIN_POOL, top_k * POOL_PER_FACTORY))
    hits = _hits(session, ids[0], scores[0])
    ranked = rank_factories(hits, top_k)
    factory_ids = [r.factory_id for r in ranked]
    factories = {f.id: f for f in session.scalars(select(Factory).where(Factory.id.in_(factory_ids)))}
    product_ids = {m.product_id for r in ranked for m in r.matches}
    products = {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(product_ids)))}
    took_ms = (time.perf_counter() - started) * 1000
    return SearchResult(ranked, factories, products, took_ms)


def _hits(session: Session, ids: np.ndarray, scores: np.ndarray) -> list[Hit]:
    wanted = {int(i): float(s) for i, s in zip(ids, scores, strict=True) if i >= 0}
    rows = session.execute(
        select(Image.id, Image.product_id, Product.factory_id).join(Product).where(Image.id.in_(list(wanted)))
    ).all()
    # An id the database no longer has (deleted just now, or before a crash) is simply dropped.
    return [Hit(row.id, row.product_id, row.factory_id, wanted[row.id]) for row in rows]
