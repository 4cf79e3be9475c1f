"""Catalogue tables. Image rows keep their embedding, so the vector index can always be rebuilt from them."""

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, RowId, UTCDateTime, utcnow


class Factory(Base):
    __tablename__ = "factories"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    region: Mapped[str | None] = mapped_column(String(255))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    products: Mapped[list["Product"]] = relationship(
        back_populates="factory", cascade="all, delete-orphan", passive_deletes=True
    )


class Product(Base):
    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    factory_id: Mapped[str] = mapped_column(ForeignKey("factories.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(500))
    category: Mapped[str | None] = mapped_column(String(255), index=True)
    price: Mapped[float | None] = mapped_column(Float)
    moq: Mapped[int | None] = mapped_column(Integer)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    factory: Mapped[Factory] = relationship(back_populates="products")
    images: Mapped[list["Image"]] = relationship(
        back_populates="product", cascade="all, delete-orphan", passive_deletes=True
    )


class Image(Base):
    __tablename__ = "images"
    # Same bytes twice in one product are one image. Ids are never reused, even on SQLite (AUTOINCREMENT): an
    # index file older than a delete must not hold another image's vector under a new image's id.
    __table_args__ = (
        UniqueConstraint("product_id", "content_hash", name="uq_image_product_hash"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), index=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of the original bytes
    source: Mapped[str] = mapped_column(String(2048))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    embedder: Mapped[str] = mapped_column(String(255), index=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian, unit length
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    product: Mapped[Product] = relationship(back_populates="images")


class ProductSearchCount(Base):
    __tablename__ = "product_search_counts"

    product_id: Mapped[str] = mapped_column(String(64), ForeignKey("products.id", ondelete="CASCADE"), primary_key=True)
    shown: Mapped[int] = mapped_column(Integer, default=0)  # on a page of search results
    confident: Mapped[int] = mapped_column(Integer, default=0)  # as a confident match
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
