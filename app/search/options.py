"""What a search asks for besides its photos: filters, paging and evidence options."""

from dataclasses import dataclass, field
from typing import Any

from app.core.errors import InvalidInputError


@dataclass(frozen=True)
class SearchFilters:
    region: str | None = None
    category: str | None = None
    max_moq: int | None = None
    min_price: float | None = None
    max_price: float | None = None
    factory_attributes: dict[str, Any] = field(default_factory=dict)  # each key must equal this value

    @property
    def active(self) -> bool:
        return any(
            v is not None for v in (self.region, self.category, self.max_moq, self.min_price, self.max_price)
        ) or bool(self.factory_attributes)

    def check(self) -> None:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise InvalidInputError(f"min_price {self.min_price} is above max_price {self.max_price}")


@dataclass(frozen=True)
class SearchOptions:
    top_k: int = 10
    offset: int = 0
    min_score: float | None = None
    filters: SearchFilters = field(default_factory=SearchFilters)
    verify: bool = True  # check the top candidates with local features
    include_weak: bool = False  # also list factories without a confident match
    auto_crop: bool = True  # without a confident match, search the photo straightened and trimmed too, if it can be
    verify_all: bool = False  # check all the top candidates, not only until the answer is decided (calibration)


@dataclass(frozen=True)
class QueryPhoto:
    data: bytes
    bbox: str | None = None  # 'x0,y0,x1,y1', pixels or fractions


def check_paging(options: SearchOptions, max_top_k: int) -> None:
    if not 1 <= options.top_k <= max_top_k:
        raise InvalidInputError(f"top_k must be between 1 and {max_top_k}, got {options.top_k}")
    if not 0 <= options.offset <= 10 * max_top_k:
        raise InvalidInputError(f"offset must be between 0 and {10 * max_top_k}, got {options.offset}")
    options.filters.check()
