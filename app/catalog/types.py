"""What the catalogue service takes and returns: plain dataclasses, never ORM rows or wire schemas."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class NewFactory:
    id: str
    name: str
    region: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewProduct:
    id: str
    factory_id: str
    title: str
    category: str | None = None
    price: float | None = None
    moq: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FactoryInfo:
    id: str
    name: str
    region: str | None
    attributes: dict[str, Any]
    created_at: datetime
    product_count: int = 0


@dataclass(frozen=True)
class ProductInfo:
    id: str
    factory_id: str
    title: str
    category: str | None
    price: float | None
    moq: int | None
    attributes: dict[str, Any]
    created_at: datetime
    image_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ImageInfo:
    id: int
    product_id: str
    content_hash: str
    source: str
    width: int
    height: int
    created_at: datetime


@dataclass(frozen=True)
class IndexStatus:
    images: int  # vectors in the index
    description: str  # its kind and parameters


@dataclass(frozen=True)
class Readiness:
    database: bool  # it answers
    images: int  # image rows in the database
    vectors: int  # vectors in the index

    @property
    def index_in_step(self) -> bool:
        return self.database and self.images == self.vectors
