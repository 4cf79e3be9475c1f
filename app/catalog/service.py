"""Factories, products and images. Every change that adds or removes images keeps the index in step.

Order of writes: database commit first, then the index. If the process dies in between, the start-up
reconcile (index_sync.py) repairs the index from the database. Each method owns its transaction and returns
dataclasses built inside it (types.py). Writes take the `actor` making them: a factory key may change only
its own factories, their products and images.
"""

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from app.catalog.facets import Facets, catalogue_facets
from app.catalog.index_sync import drop_if_deleted, fields_for, refresh_fields, vector_to_bytes
from app.catalog.media import MediaStore
from app.catalog.models import Factory, Image, Product
from app.catalog.types import FactoryInfo, ImageInfo, IndexStatus, NewFactory, NewProduct, ProductInfo, Readiness
from app.core.access import Principal
from app.core.db import DatabaseError, begin_write
from app.core.errors import ConflictError, InvalidInputError, NotFoundError
from app.core.jsonvalues import check_json
from embeddings import ImageDecoder, LoadedImage, ModelScheduler, Preprocess
from index import VectorIndex

# Fields an update may set to null (clearing them); a null for any other field leaves it as it is.
CLEARABLE_FACTORY_FIELDS = ("region",)
CLEARABLE_PRODUCT_FIELDS = ("category", "price", "moq")
FILTERED_PRODUCT_FIELDS = {"category", "price", "moq", "factory_id"}  # stored beside vectors in Milvus


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CatalogService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        index: VectorIndex,
        media: MediaStore,
        decoder: ImageDecoder,
        preprocess: Preprocess,
        scheduler: ModelScheduler,
        model_name: str,
        max_attributes_bytes: int = 16 * 1024,
    ) -> None:
        self.max_attributes_bytes = max_attributes_bytes
        self.sessions = sessions
        self.index = index
        self.media = media
        self.decoder = decoder
        self.preprocess = preprocess
        self.scheduler = scheduler
        self.model_name = model_name

    # --- factories ---------------------------------------------------------------------------------

    def create_factory(self, new: NewFactory, actor: Principal) -> FactoryInfo:
        actor.check_write(new.id)
        self._check_attributes(new.attributes)
        with self.sessions() as session:
            if session.get(Factory, new.id):
                raise ConflictError(f"factory {new.id!r} already exists")
            factory = Factory(id=new.id, name=new.name, region=new.region, attributes=new.attributes)
            session.add(factory)
            session.commit()
            return factory_info(factory)

    def get_factory(self, factory_id: str) -> FactoryInfo:
        with self.sessions() as session:
            factory = _factory(session, factory_id)
            return factory_info(factory, _product_counts(session, [factory_id]).get(factory_id, 0))

    def list_factories(self, *, offset: int = 0, limit: int = 50) -> list[FactoryInfo]:
        with self.sessions() as session:
            factories = list(session.scalars(select(Factory).order_by(Factory.id).offset(offset).limit(limit)))
            counts = _product_counts(session, [factory.id for factory in factories])
            return [factory_info(factory, counts.get(factory.id, 0)) for factory in factories]

    def facets(self) -> Facets:
        with self.sessions() as session:
            return catalogue_facets(session)

    def update_factory(self, factory_id: str, changes: Mapping[str, Any], actor: Principal) -> FactoryInfo:
        actor.check_write(factory_id)
        self._check_attributes(changes.get("attributes"))
        with self.sessions() as session:
            factory = _factory(session, factory_id)
            _apply(factory, changes, CLEARABLE_FACTORY_FIELDS)
            session.commit()
            if "region" in changes:
                refresh_fields(session, self.index, _image_ids(session, Product.factory_id == factory_id))
            return factory_info(factory, _product_counts(session, [factory_id]).get(factory_id, 0))

    def delete_factory(self, factory_id: str, actor: Principal) -> int:
        """Delete a factory with its products and images; returns how many vectors were removed."""
        actor.check_write(factory_id)
        with self.sessions() as session:
            begin_write(session)
            factory = _factory(session, factory_id, lock=True)
            # Its products locked, then their images listed: see delete_product.
            session.execute(select(Product.id).where(Product.factory_id == factory_id).with_for_update())
            image_ids = _image_ids(session, Product.factory_id == factory_id)
            session.delete(factory)
            session.commit()
        return self.index.remove(np.array(image_ids, dtype=np.int64))

    # --- products ----------------------------------------------------------------------------------

    def create_product(self, new: NewProduct, actor: Principal) -> ProductInfo:
        actor.check_write(new.factory_id)
        self._check_attributes(new.attributes)
        with self.sessions() as session:
            if session.get(Factory, new.factory_id) is None:
                raise InvalidInputError(f"factory {new.factory_id!r} does not exist; create it first")
            if session.get(Product, new.id):
                raise ConflictError(f"product {new.id!r} already exists")
            product = Product(
                id=new.id,
                factory_id=new.factory_id,
                title=new.title,
                category=new.category,
                price=new.price,
                moq=new.moq,
                attributes=new.attributes,
            )
            session.add(product)
            session.commit()
            return product_info(product, [])

    def get_product(self, product_id: str) -> ProductInfo:
        with self.sessions() as session:
            product = _product(session, product_id)
            return product_info(product, [image.id for image in product.images])

    def list_products(self, *, factory_id: str | None = None, offset: int = 0, limit: int = 50) -> list[ProductInfo]:
        query = select(Product).options(selectinload(Product.images)).order_by(Product.id).offset(offset).limit(limit)
        if factory_id is not None:
            query = query.where(Product.factory_id == factory_id)
        with self.sessions() as session:
            return [product_info(p, [image.id for image in p.images]) for p in session.scalars(query)]

    def update_product(self, product_id: str, changes: Mapping[str, Any], actor: Principal) -> ProductInfo:
        self._check_attributes(changes.get("attributes"))
        with self.sessions() as session:
            product = _product(session, product_id)
            actor.check_write(product.factory_id)
            _apply(product, changes, CLEARABLE_PRODUCT_FIELDS)
            session.commit()
            if FILTERED_PRODUCT_FIELDS & changes.keys():
                refresh_fields(session, self.index, _image_ids(session, Product.id == product_id))
            return product_info(product, [image.id for image in product.images])

    def delete_product(self, product_id: str, actor: Principal) -> int:
        with self.sessions() as session:
            begin_write(session)
            product = _product(session, product_id, lock=True)
            actor.check_write(product.factory_id)
            # Locked first, then listed: an image being added now waits for this delete and then finds no
            # product, so no image is missed here and left in the index.
            image_ids = _image_ids(session, Product.id == product_id)
            session.delete(product)
            session.commit()
        # the index casts ids to int64 itself, so a mutated dtype here is equivalent
        return self.index.remove(np.array(image_ids, dtype=np.int64))  # pragma: no mutate

    def product_images(self, product_id: str) -> list[ImageInfo]:
        with self.sessions() as session:
            return [image_info(image) for image in _product(session, product_id).images]

    # --- images ------------------------------------------------------------------------------------

    def get_image(self, image_id: int) -> ImageInfo:
        with self.sessions() as session:
            return image_info(_image(session, image_id))

    def image_file(self, image_id: int) -> Path:
        """Where the image's stored copy (JPEG, shorter side about 320 px) is."""
        path = self.media.path(self.get_image(image_id).content_hash)
        if not path.exists():
            raise NotFoundError(f"the stored copy of image {image_id} is missing")
        return path

    def add_image(self, product_id: str, data: bytes, source: str, actor: Principal) -> tuple[ImageInfo, bool]:
        """Decode, embed and store one image; (image, created). Known bytes return the stored image."""
        digest = content_hash(data)
        with self.sessions() as session:
            actor.check_write(_product(session, product_id).factory_id)
            if (existing := _find_image(session, product_id, digest)) is not None:
                return image_info(existing), False
        loaded = self.decoder.decode(data)
        vector = self.scheduler.embed_bulk(self.preprocess(loaded.image)[None])[0]
        self.media.save(digest, loaded.image)
        with self.sessions() as session:
            image = new_image_row(product_id, digest, source, loaded, vector, self.model_name)
            session.add(image)
            try:
                session.commit()
            except IntegrityError:  # the same bytes were added concurrently
                session.rollback()
                stored = _find_image(session, product_id, digest)
                if stored is None:  # the product itself went away meanwhile
                    raise NotFoundError(f"product {product_id!r} not found") from None
                return image_info(stored), False
            ids = np.array([image.id], dtype=np.int64)
            info = image_info(image)
            self.index.upsert(ids, vector[None, :], fields_for(session, self.index, ids))
            drop_if_deleted(session, self.index, ids)  # its product may have been deleted meanwhile
            return info, True

    def delete_image(self, image_id: int, actor: Principal) -> None:
        with self.sessions() as session:
            image = _image(session, image_id)
            actor.check_write(image.product.factory_id)
            session.delete(image)
            session.commit()
        self.index.remove(np.array([image_id], dtype=np.int64))  # pragma: no mutate (the index casts to int64)

    def readiness(self) -> Readiness:
        """Whether the database answers and the index holds a vector for each image row."""
        try:
            with self.sessions() as session:
                images = session.scalar(select(func.count()).select_from(Image)) or 0
        except DatabaseError:
            return Readiness(database=False, images=0, vectors=len(self.index))
        return Readiness(database=True, images=images, vectors=len(self.index))

    def index_status(self) -> IndexStatus:
        return IndexStatus(images=len(self.index), description=self.index.describe())

    def _check_attributes(self, attributes: dict[str, Any] | None) -> None:
        if attributes is not None:
            check_json(attributes, self.max_attributes_bytes, "attributes")


def new_image_row(
    product_id: str, digest: str, source: str, loaded: LoadedImage, vector: np.ndarray, model_name: str
) -> Image:
    """An Image row for a decoded and embedded picture (its stored copy is saved by the caller)."""
    return Image(
        product_id=product_id,
        content_hash=digest,
        source=source[:2048],
        width=loaded.width,
        height=loaded.height,
        embedder=model_name,
        embedding=vector_to_bytes(vector),
    )


def factory_info(factory: Factory, product_count: int = 0) -> FactoryInfo:
    return FactoryInfo(
        id=factory.id,
        name=factory.name,
        region=factory.region,
        attributes=dict(factory.attributes),
        created_at=factory.created_at,
        product_count=product_count,
    )


def product_info(product: Product, image_ids: list[int]) -> ProductInfo:
    return ProductInfo(
        id=product.id,
        factory_id=product.factory_id,
        title=product.title,
        category=product.category,
        price=product.price,
        moq=product.moq,
        attributes=dict(product.attributes),
        created_at=product.created_at,
        image_ids=sorted(image_ids),
    )


def image_info(image: Image) -> ImageInfo:
    return ImageInfo(
        id=image.id,
        product_id=image.product_id,
        content_hash=image.content_hash,
        source=image.source,
        width=image.width,
        height=image.height,
        created_at=image.created_at,
    )


def _apply(target: Factory | Product, changes: Mapping[str, Any], clearable: tuple[str, ...]) -> None:
    for name, value in changes.items():
        if value is not None or name in clearable:
            setattr(target, name, value)


def _product_counts(session: Session, factory_ids: list[str]) -> dict[str, int]:
    rows = session.execute(
        select(Product.factory_id, func.count()).where(Product.factory_id.in_(factory_ids)).group_by(Product.factory_id)
    )
    return dict(rows.tuples().all())


def _image_ids(session: Session, where: ColumnElement[bool]) -> list[int]:
    return list(session.scalars(select(Image.id).join(Product).where(where)))


def _factory(session: Session, factory_id: str, lock: bool = False) -> Factory:
    factory = session.get(Factory, factory_id, with_for_update=lock)
    if factory is None:
        raise NotFoundError(f"factory {factory_id!r} not found")
    return factory


def _product(session: Session, product_id: str, lock: bool = False) -> Product:
    product = session.get(Product, product_id, with_for_update=lock)
    if product is None:
        raise NotFoundError(f"product {product_id!r} not found")
    return product


def _image(session: Session, image_id: int) -> Image:
    image = session.get(Image, image_id)
    if image is None:
        raise NotFoundError(f"image {image_id} not found")
    return image


def _find_image(session: Session, product_id: str, digest: str) -> Image | None:
    return session.scalar(select(Image).where(Image.product_id == product_id, Image.content_hash == digest))
