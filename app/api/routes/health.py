"""GET /healthz."""

from fastapi import APIRouter

from app.api.deps import CatalogDep, SchedulerDep
from app.api.schemas import HealthRead
from app.api.security import Public

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthRead, dependencies=[Public])
def healthz(catalog: CatalogDep, scheduler: SchedulerDep) -> HealthRead:
    model, stats, index = scheduler.model, scheduler.stats, catalog.index_status()
    assert model is not None  # the lifespan starts the scheduler with its model before serving
    return HealthRead(
        status="ok",
        model=model.name,
        precision=model.precision,
        dim=model.dim,
        images=index.images,
        index=index.description,
        search_batches=stats.batches,
        searches_embedded=stats.images,
        model_busy_s=stats.busy_s,
    )
