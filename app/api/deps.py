"""What routes depend on, as `Annotated` aliases. The services live in the lifespan's state (main.py)."""

from typing import Annotated, TypedDict

from fastapi import Depends, Path, Query, Request

from app.access.keys import KeyStore
from app.alerts.service import SavedSearches
from app.batch.service import BatchQueries
from app.calibration.service import CalibrationService
from app.catalog.search_counts import SearchCounter
from app.catalog.service import CatalogService
from app.core.config import Settings
from app.core.metrics import Metrics
from app.ingest.fetch import Fetcher
from app.ingest.intake import UploadIntake
from app.ingest.jobs import JobStore
from app.search.pipeline import SearchService
from embeddings import ModelScheduler, Ticket


class AppState(TypedDict):
    """The lifespan's state: what requests may use."""

    settings: Settings
    search: SearchService
    catalog: CatalogService
    jobs: JobStore
    intake: UploadIntake
    scheduler: ModelScheduler
    keys: KeyStore
    metrics: Metrics
    calibration: CalibrationService
    fetcher: Fetcher
    queries: BatchQueries
    saved: SavedSearches
    search_counts: SearchCounter


# The getters are `async def`: they only read what the lifespan put on the request's state, and FastAPI runs a
# plain `def` dependency in its thread pool, one thread hand-off each (seven for a search).
async def get_settings(request: Request) -> Settings:
    return request.state.settings


async def get_search(request: Request) -> SearchService:
    return request.state.search


async def get_catalog(request: Request) -> CatalogService:
    return request.state.catalog


async def get_jobs(request: Request) -> JobStore:
    return request.state.jobs


async def get_intake(request: Request) -> UploadIntake:
    return request.state.intake


async def get_scheduler(request: Request) -> ModelScheduler:
    return request.state.scheduler


async def get_keys(request: Request) -> KeyStore:
    return request.state.keys


async def get_metrics(request: Request) -> Metrics:
    return request.state.metrics


async def get_calibration(request: Request) -> CalibrationService:
    return request.state.calibration


async def get_fetcher(request: Request) -> Fetcher:
    return request.state.fetcher


async def get_queries(request: Request) -> BatchQueries:
    return request.state.queries


async def get_saved(request: Request) -> SavedSearches:
    return request.state.saved


async def get_search_counts(request: Request) -> SearchCounter:
    return request.state.search_counts


async def get_ticket(request: Request) -> Ticket | None:
    """The search's place with the scheduler, taken by the middleware when the request arrived."""
    return getattr(request.state, "ticket", None)


SettingsDep = Annotated[Settings, Depends(get_settings)]
SearchDep = Annotated[SearchService, Depends(get_search)]
CatalogDep = Annotated[CatalogService, Depends(get_catalog)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
IntakeDep = Annotated[UploadIntake, Depends(get_intake)]
SchedulerDep = Annotated[ModelScheduler, Depends(get_scheduler)]
TicketDep = Annotated[Ticket | None, Depends(get_ticket)]
KeysDep = Annotated[KeyStore, Depends(get_keys)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
CalibrationDep = Annotated[CalibrationService, Depends(get_calibration)]
FetcherDep = Annotated[Fetcher, Depends(get_fetcher)]
QueriesDep = Annotated[BatchQueries, Depends(get_queries)]
SavedDep = Annotated[SavedSearches, Depends(get_saved)]
SearchCountsDep = Annotated[SearchCounter, Depends(get_search_counts)]

# Paging parameters shared by the list endpoints; bounded, so a huge number is a 422, not a database overflow.
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="How many rows to skip.")]
Limit = Annotated[int, Query(ge=1, le=500, description="How many rows to return.")]
ImageId = Annotated[int, Path(ge=1, le=2**63 - 1, description="An image's id.")]
