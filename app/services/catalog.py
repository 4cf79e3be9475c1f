"""Factories, products and images. Every change that adds or removes images keeps the index in step.

Order of writes: database commit first, then the index. If the process dies in between, the start-up
reconcile (app.services.index_sync) repairs the index from the database.
"""

import hashlib

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import Factory, Image, Product
from app.runtime import Runtime
from app.schemas import FactoryCreate, FactoryUpdate, ProductCreate, ProductUpdate
from app.services.errors import ConflictError, InvalidInputError, NotFoundError
from app.services.index_sync import vector_to_bytes
from embeddings import LoadedImage
from index import VectorIndex


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- factories -------------------------------------------------------------------------------------


def create_factory(session: Session, data: FactoryCreate) -> Factory:
    if session.get(Factory, data.id):
        raise ConflictError(f"factory {data.id!r} already exists")
    factory = Factory(**data.model_dump())
    session.add(factory)
    session.commit()
    return factory


def get_factory(session: Session, factory_id: str) -> Factory:
    factory = session.get(Factory, factory_id)
    if factory is None:
        raise NotFoundError(f"factory {factory_id!r} not found")
    return factory


def list_factories(session: Session, *, offset: int = 0, limit: int = 50) -> list[Factory]:
    return list(session.scalars(select(Factory).order_by(Factory.id).offset(offset).limit(limit)))


def count_products(session: Session, factory_ids: list[str]) -> dict[str, int]:
    rows = session.execute(
        select(Product.factory_id, func.count()).where(Product.factory_id.in_(factory_ids)).group_by(Product.factory_id)
    )
    return dict(rows.tuples().all())


def update_factory(session: Session, factory_id: str, data: FactoryUpdate) -> Factory:
    factory = get_factory(session, factory_id)
    for field, value in data.model_dump(exclude_unset=True).items():
        if value is not None or field == "region":
            setattr(factory, field, value)
    session.commit()
    return factory


def delete_factory(session: Session, index: VectorIndex, factory_id: str) -> int:
    """Delete a factory with its products and images; returns how many vectors were removed."""
    factory = get_factory(session, factory_id)
    image_ids = list(session.scalars(select(Image.id).join(Product).where(Product.factory_id == factory_id)))
    session.delete(factory)
    session.commit()
    return index.remove(np.array(image_ids, dtype=np.int64))


# --- products --------------------------------------------------------------------------------------


def create_product(session: Session, data: ProductCreate) -> Product:
    if session.get(Factory, data.factory_id) is None:
        raise InvalidInputError(f"factory {data.factory_id!r} does not exist; create it first")
    if session.get(Product, data.id):
        raise ConflictError(f"product {data.id!r} already exists")
    product = Product(**data.model_dump())
    session.add(product)
    session.commit()
    return product


def get_product(session: Session, product_id: str) -> Product:
    product = session.get(Product, product_id)
    if product is None:
        raise NotFoundError(f"product {product_id!r} not found")
    return product


def list_products(
    session: Session, *, factory_id: str | None = None, offset: int = 0, limit: int = 50
) -> list[Product]:
    query = select(Product).order_by(Product.id).offset(offset).limit(limit)
    if factory_id is not None:
        query = query.where(Product.factory_id == factory_id)
    return list(session.scalars(query))


def update_product(session: Session, product_id: str, data: ProductUpdate) -> Product:
    product = get_product(session, product_id)
    for field, value in data.model_dump(exclude_unset=True).items():
        if value is not None or field in ("category", "price", "moq"):
            setattr(product, field, value)
    session.commit()
    return product


def delete_product(session: Session, index: VectorIndex, product_id: str) -> int:
    product = get_product(session, product_id)
    image_ids = [image.id for image in product.images]
    session.delete(product)
    session.commit()
    return index.remove(np.array(image_ids, dtype=np.int64))


# --- images ----------------------------------------------------------------------------------------


def get_image(session: Session, image_id: int) -> Image:
    image = session.get(Image, image_id)
    if image is None:
        raise NotFoundError(f"image {image_id} not found")
    return image


def find_image(session: Session, product_id: str, digest: str) -> Image | None:
    return session.scalar(select(Image).where(Image.product_id == product_id, Image.content_hash == digest))


def add_image(session: Session, rt: Runtime, product_id: str, data: bytes, source: str) -> tuple[Image, bool]:
    """Decode, embed and store one image; (image, created). Known bytes return the stored image."""
    get_product(session, product_id)
    digest = content_hash(data)
    existing = find_image(session, product_id, digest)
    if existing is not None:
        return existing, False
    loaded = rt.load_image(data)
    vector = rt.embedder.embed_images([loaded.image])[0]
    image = new_image_row(rt, product_id, digest, source, loaded, vector)
    session.add(image)
    try:
        session.commit()
    except IntegrityError:  # the same bytes were added concurrently
        session.rollback()
        return find_image(session, product_id, digest), False
    rt.index.upsert(np.array([image.id]), vector[None, :])
    return image, True


def new_image_row(
    rt: Runtime, product_id: str, digest: str, source: str, loaded: LoadedImage, vector: np.ndarray
) -> Image:
    """An Image row for a decoded and embedded picture; its reduced copy is saved to the media store."""
    rt.media.save(digest, loaded.image)  # a no-op when the copy is there already
    return Image(
        product_id=product_id,
        content_hash=digest,
        source=source[:2048],
        width=loaded.width,
        height=loaded.height,
        embedder=rt.embedder.name,
        embedding=vector_to_bytes(vector),
    )


def delete_image(session: Session, index: VectorIndex, image_id: int) -> None:
    image = get_image(session, image_id)
    session.delete(image)
    session.commit()
    index.remove(np.array([image_id], dtype=np.int64))
