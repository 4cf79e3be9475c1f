"""/api/v1/query-jobs: batch queries. Many photos (a ZIP, or a CSV or text list of image URLs) searched as a
resumable job; its results as JSON or CSV. For any API key; each key sees its own jobs (an admin, all)."""

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status
from fastapi.responses import PlainTextResponse

from app.api.deps import Limit, Offset, QueriesDep
from app.api.schemas import QueryAnswerRead, QueryJobRead
from app.api.security import ReadCaller
from app.api.spreadsheets import csv_response
from app.batch.service import MAX_TOP_K, QueryJobInfo, QueryPlan

router = APIRouter(prefix="/api/v1/query-jobs", tags=["query jobs"])
CSV_COLUMNS = [
    "number", "name", "rank", "factory_id", "factory_name", "region", "match_level", "confident", "score",
    "product_id", "title", "image_id", "error",
]  # fmt: skip


def job_read(job: QueryJobInfo) -> QueryJobRead:
    return QueryJobRead.model_validate(job, from_attributes=True)


@router.post(
    "",
    response_model=QueryJobRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses={401: {"description": "No API key"}, 413: {"description": "Upload too large"}},
)
def submit_query_job(
    queries: QueriesDep,
    caller: ReadCaller,
    response: Response,
    file: Annotated[UploadFile, File(description="A ZIP of photos, or a CSV/text list of image URLs.")],
    top_k: Annotated[int, Form(ge=1, le=MAX_TOP_K, description="Factories kept per photo.")] = 3,
    include_weak: Annotated[bool, Form(description="Keep candidates without a confident match.")] = False,
    region: Annotated[str | None, Form(max_length=255)] = None,
    category: Annotated[str | None, Form(max_length=255)] = None,
    max_moq: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
    min_price: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
    max_price: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
) -> QueryJobRead:
    filters = {"region": region, "category": category, "max_moq": max_moq, "min_price": min_price}
    filters["max_price"] = max_price
    plan = QueryPlan(top_k, include_weak, {k: v for k, v in filters.items() if v is not None})
    job = queries.submit(file.filename or "", file.file, plan, caller)
    response.headers["Location"] = f"/api/v1/query-jobs/{job.id}"
    return job_read(job)


@router.get("", response_model=list[QueryJobRead])
def list_query_jobs(
    queries: QueriesDep, caller: ReadCaller, offset: Offset = 0, limit: Limit = 20
) -> list[QueryJobRead]:
    """The caller's jobs, newest first (all of them for an admin)."""
    return [job_read(job) for job in queries.recent(caller, offset, limit)]


@router.get("/{job_id}", response_model=QueryJobRead)
def read_query_job(queries: QueriesDep, caller: ReadCaller, job_id: str) -> QueryJobRead:
    return job_read(queries.get(job_id, caller))


@router.get(
    "/{job_id}/results",
    response_model=list[QueryAnswerRead],
    responses={200: {"content": {"text/csv": {}}}},
)
def query_job_results(
    queries: QueriesDep,
    caller: ReadCaller,
    job_id: str,
    format: Annotated[str, Query(pattern="^(json|csv)$", description="json (default) or csv")] = "json",
) -> list[QueryAnswerRead] | PlainTextResponse:
    """Each photo's answer so far, in the upload's order (a running job's later photos have none yet)."""
    items = [QueryAnswerRead.model_validate(i, from_attributes=True) for i in queries.results(job_id, caller)]
    if format == "json":
        return items
    return csv_response(CSV_COLUMNS, _csv_rows(items), f"sourcelens-{job_id}.csv")


@router.delete("/{job_id}", response_model=QueryJobRead)
def cancel_query_job(queries: QueriesDep, caller: ReadCaller, job_id: str) -> QueryJobRead:
    """Stop a queued or running job after the photo in hand; the answers so far stay."""
    return job_read(queries.cancel(job_id, caller))


def _csv_rows(items: list[QueryAnswerRead]) -> Iterator[dict[str, Any]]:
    """One row per photo and factory (rank 1, 2, …); a photo without factories gets one row, rank empty."""
    for item in items:
        base = {"number": item.number, "name": item.name, "error": item.error or ""}
        factories = (item.answer or {}).get("factories") or []
        if not factories:
            yield base
        for rank, factory in enumerate(factories, 1):
            row = {**base, "rank": rank, "factory_name": factory.get("name")}
            row.update({k: factory.get(k) for k in CSV_COLUMNS if k in factory and k != "name"})
            yield row
