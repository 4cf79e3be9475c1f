"""/api/v1/factories: create, list, read, update, delete (deleting removes the factory's vectors)."""

from fastapi import APIRouter, status

from app.api.deps import CatalogDep, Limit, Offset, SearchCountsDep
from app.api.mapping import factory_read
from app.api.schemas import FactoryCreate, FactoryRead, FactoryUpdate, SearchCountRead
from app.api.security import ReadCaller, WriteCaller
from app.catalog.types import NewFactory

router = APIRouter(prefix="/api/v1/factories", tags=["factories"])


@router.post("", response_model=FactoryRead, status_code=status.HTTP_201_CREATED)
def create_factory(catalog: CatalogDep, caller: WriteCaller, body: FactoryCreate) -> FactoryRead:
    return factory_read(catalog.create_factory(NewFactory(**body.model_dump()), caller))


@router.get("", response_model=list[FactoryRead])
def list_factories(
    catalog: CatalogDep, _caller: ReadCaller, offset: Offset = 0, limit: Limit = 50
) -> list[FactoryRead]:
    return [factory_read(factory) for factory in catalog.list_factories(offset=offset, limit=limit)]


@router.get("/{factory_id}", response_model=FactoryRead)
def read_factory(catalog: CatalogDep, _caller: ReadCaller, factory_id: str) -> FactoryRead:
    return factory_read(catalog.get_factory(factory_id))


@router.patch("/{factory_id}", response_model=FactoryRead)
def update_factory(catalog: CatalogDep, caller: WriteCaller, factory_id: str, body: FactoryUpdate) -> FactoryRead:
    return factory_read(catalog.update_factory(factory_id, body.model_dump(exclude_unset=True), caller))


@router.delete("/{factory_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_factory(catalog: CatalogDep, caller: WriteCaller, factory_id: str) -> None:
    catalog.delete_factory(factory_id, caller)


@router.get("/{factory_id}/search-counts", response_model=list[SearchCountRead])
def factory_search_counts(
    catalog: CatalogDep, counts: SearchCountsDep, caller: WriteCaller, factory_id: str
) -> list[SearchCountRead]:
    """How often searches showed each of the factory's products, and as a confident match (counts only): for
    the factory's own keys and admins."""
    catalog.get_factory(factory_id)  # 404 for an unknown factory
    caller.check_write(factory_id)
    return [SearchCountRead.model_validate(c, from_attributes=True) for c in counts.counts(factory_id)]
