"""What a search reads from the catalogue: the ids its filters allow, each hit's product and factory, the
page's factories and products, and a catalogue image to search from. One session per search."""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from app.catalog.index_sync import vector_from_bytes
from app.catalog.models import Factory, Image, Product
from app.catalog.service import factory_info, product_info
from app.catalog.types import FactoryInfo, ProductInfo
from app.core.errors import NotFoundError
from app.search.fusion import ImageRef
from app.search.options import SearchFilters
from index import VectorFilter


class SourceImage(NamedTuple):
    """A catalogue image to search from ("more like this")."""

    vector: np.ndarray
    product_id: str
    content_hash: str


class SearchLookup:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @contextmanager
    def reader(self) -> Iterator["CatalogueReader"]:
        with self.sessions() as session:
            yield CatalogueReader(session)


class CatalogueReader:
    """Reads within one session; what it returns are plain tuples and dataclasses."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def allowed_image_ids(self, filters: SearchFilters) -> np.ndarray | None:
        """Ids of the images that pass the filters, or None when there are no filters (everything passes)."""
        if not filters.active:
            return None
        rows = self.session.execute(
            _filtered(select(Image.id, Product.factory_id).join(Product).join(Factory), filters)
        )
        if not filters.factory_attributes:
            return np.array([row.id for row in rows], dtype=np.int64)
        kept = self._factories_with(filters.factory_attributes)
        return np.array([row.id for row in rows if row.factory_id in kept], dtype=np.int64)

    def _factories_with(self, wanted: dict[str, Any]) -> set[str]:
        # JSON attributes compare in Python: the same on SQLite and PostgreSQL, and factories are few.
        factories = self.session.execute(select(Factory.id, Factory.attributes)).all()
        return {f.id for f in factories if all(f.attributes.get(k) == v for k, v in wanted.items())}

    def vector_filter(self, filters: SearchFilters) -> VectorFilter | None:
        """The filters for a store that applies them itself (Milvus); factory attributes become the list of
        factories that have them."""
        if not filters.active:
            return None
        wanted = filters.factory_attributes
        factory_ids = tuple(sorted(self._factories_with(wanted))) if wanted else None
        return VectorFilter(
            region=filters.region,
            category=filters.category,
            min_price=filters.min_price,
            max_price=filters.max_price,
            max_moq=filters.max_moq,
            factory_ids=factory_ids,
        )

    def image_refs(self, image_ids: Iterable[int]) -> Iterator[ImageRef]:
        """Product, factory, content hash and category of each image the database still has (a deleted one is
        skipped)."""
        # Core rows, kept as named tuples: the ORM's result machinery and Row attribute access cost as much as
        # the query itself (with the leaner fusing: the lookup of 200 hits 9.9 -> 5.6 ms, 1M catalogue).
        rows = self.session.connection().execute(_IMAGE_REFS, {"ids": list(image_ids)}).all()
        return (ImageRef._make(row) for row in rows)

    def page_rows(
        self, factory_ids: list[str], product_ids: list[str]
    ) -> tuple[dict[str, FactoryInfo], dict[str, ProductInfo]]:
        factories = self.session.scalars(select(Factory).where(Factory.id.in_(factory_ids)))
        products = self.session.scalars(select(Product).where(Product.id.in_(product_ids)))
        return {f.id: factory_info(f) for f in factories}, {p.id: product_info(p, []) for p in products}

    def source_image(self, image_id: int) -> SourceImage:
        image = self.session.get(Image, image_id)
        if image is None:
            raise NotFoundError(f"image {image_id} not found")
        return SourceImage(vector_from_bytes(image.embedding).astype(np.float32), image.product_id, image.content_hash)


# Built once: building the statement for each search (its IN clause of 200 ids) cost 1 ms of its 2.
_IMAGE_REFS = (
    select(Image.id, Image.product_id, Image.content_hash, Product.factory_id, Product.category)
    .join(Product)
    .where(Image.id.in_(bindparam("ids", expanding=True)))
)


def _filtered(query: Select[int, str], filters: SearchFilters) -> Select[int, str]:
    if filters.region is not None:
        query = query.where(Factory.region == filters.region)
    if filters.category is not None:
        query = query.where(Product.category == filters.category)
    if filters.max_moq is not None:
        query = query.where(Product.moq <= filters.max_moq)
    if filters.min_price is not None:
        query = query.where(Product.price >= filters.min_price)
    if filters.max_price is not None:
        query = query.where(Product.price <= filters.max_price)
    return query
