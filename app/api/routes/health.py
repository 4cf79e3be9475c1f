"""/healthz (the process is alive), /readyz (it can serve: model loaded, database answering, index in step
with the database) and /metrics (Prometheus)."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from app.api.deps import CatalogDep, MetricsDep, SchedulerDep
from app.api.schemas import HealthRead, ReadyRead
from app.api.security import MetricsCaller, Public

router = APIRouter(tags=["health"])
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz", response_model=HealthRead, dependencies=[Public])
def healthz(catalog: CatalogDep, scheduler: SchedulerDep) -> HealthRead:
    """Alive, and what it serves; reads nothing from the database."""
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


@router.get("/readyz", response_model=ReadyRead, dependencies=[Public], responses={503: {"model": ReadyRead}})
def readyz(catalog: CatalogDep, scheduler: SchedulerDep) -> JSONResponse:
    """Ready to serve: 200, or 503 with the checks that fail (for load balancers and container health)."""
    state = catalog.readiness()
    body = ReadyRead(
        ready=scheduler.model is not None and state.index_in_step,
        model_loaded=scheduler.model is not None,
        database=state.database,
        index_in_step=state.index_in_step,
        images=state.images,
        vectors=state.vectors,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {PROMETHEUS_TEXT: {}}}})
def metrics(metrics: MetricsDep, _caller: MetricsCaller) -> Response:
    return Response(metrics.exposition(), media_type=PROMETHEUS_TEXT)
