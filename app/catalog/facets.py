"""The catalogue's own filter values, with how many products each has: what a search page offers as filters."""

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.catalog.models import Factory, Product

MAX_VALUES = 200  # per facet, most products first: a filter list, not an export


@dataclass(frozen=True)
class FacetValue:
    value: str
    products: int


@dataclass(frozen=True)
class Facets:
    regions: list[FacetValue]  # of the products' factories
    categories: list[FacetValue]
    min_price: float | None
    max_price: float | None
    min_moq: int | None
    max_moq: int | None
    products: int
    factories: int


def catalogue_facets(session: Session) -> Facets:
    regions = session.execute(
        select(Factory.region, func.count(Product.id))
        .join(Product, Product.factory_id == Factory.id)
        .where(Factory.region.is_not(None))
        .group_by(Factory.region)
        .order_by(func.count(Product.id).desc(), Factory.region)
        .limit(MAX_VALUES)
    ).all()
    categories = session.execute(
        select(Product.category, func.count(Product.id))
        .where(Product.category.is_not(None))
        .group_by(Product.category)
        .order_by(func.count(Product.id).desc(), Product.category)
        .limit(MAX_VALUES)
    ).all()
    low_price, high_price, low_moq, high_moq, products = session.execute(
        select(
            func.min(Product.price),
            func.max(Product.price),
            func.min(Product.moq),
            func.max(Product.moq),
            func.count(Product.id),
        )
    ).one()
    factories = session.scalar(select(func.count(Factory.id))) or 0
    return Facets(
        regions=[FacetValue(value, count) for value, count in regions if value is not None],
        categories=[FacetValue(value, count) for value, count in categories if value is not None],
        min_price=low_price,
        max_price=high_price,
        min_moq=low_moq,
        max_moq=high_moq,
        products=products,
        factories=factories,
    )
