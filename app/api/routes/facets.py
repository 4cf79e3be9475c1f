"""/api/v1/facets: the catalogue's own filter values (regions, categories, price and MOQ ranges)."""

from fastapi import APIRouter

from app.api.deps import CatalogDep
from app.api.mapping import facets_read
from app.api.schemas import FacetsRead
from app.api.security import ReadCaller

router = APIRouter(prefix="/api/v1", tags=["search"])


@router.get("/facets", response_model=FacetsRead)
def facets_route(catalog: CatalogDep, _caller: ReadCaller) -> FacetsRead:
    """What a search can be filtered by, with how many products each value has."""
    return facets_read(catalog.facets())
