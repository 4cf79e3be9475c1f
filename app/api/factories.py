"""/api/v1/factories: create, list, read, update, delete (deleting removes the factory's vectors)."""

from fastapi import APIRouter, status

from app.api.deps import Limit, Offset, RuntimeDep, SessionDep
from app.schemas import FactoryCreate, FactoryRead, FactoryUpdate
from app.services import catalog
from app.views import factory_read

router = APIRouter(prefix="/api/v1/factories", tags=["factories"])


@router.post("", response_model=FactoryRead, status_code=status.HTTP_201_CREATED)
def create_factory(session: SessionDep, body: FactoryCreate) -> FactoryRead:
    return factory_read(catalog.create_factory(session, body))


@router.get("", response_model=list[FactoryRead])
def list_factories(session: SessionDep, offset: Offset = 0, limit: Limit = 50) -> list[FactoryRead]:
    factories = catalog.list_factories(session, offset=offset, limit=limit)
    counts = catalog.count_products(session, [factory.id for factory in factories])
    return [factory_read(factory, counts.get(factory.id, 0)) for factory in factories]


@router.get("/{factory_id}", response_model=FactoryRead)
def read_factory(session: SessionDep, factory_id: str) -> FactoryRead:
    factory = catalog.get_factory(session, factory_id)
    return factory_read(factory, catalog.count_products(session, [factory_id]).get(factory_id, 0))


@router.patch("/{factory_id}", response_model=FactoryRead)
def update_factory(session: SessionDep, factory_id: str, body: FactoryUpdate) -> FactoryRead:
    factory = catalog.update_factory(session, factory_id, body)
    return factory_read(factory, catalog.count_products(session, [factory_id]).get(factory_id, 0))


@router.delete("/{factory_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_factory(runtime: RuntimeDep, session: SessionDep, factory_id: str) -> None:
    catalog.delete_factory(session, runtime.index, factory_id)
