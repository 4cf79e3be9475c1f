"""/api/v1/ingest-jobs: bulk catalogue uploads (ZIP with manifest.csv, or a CSV of image URLs) as jobs."""

from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile, status
from fastapi.responses import PlainTextResponse

from app.api.deps import IntakeDep, JobsDep, Limit, Offset
from app.api.mapping import job_read
from app.api.schemas import IngestJobRead
from app.api.security import WriteCaller
from app.api.spreadsheets import csv_response
from app.ingest.jobs import FailedRow
from app.ingest.manifest import KNOWN_COLUMNS

router = APIRouter(prefix="/api/v1/ingest-jobs", tags=["ingest jobs"])


@router.post(
    "",
    response_model=IngestJobRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses={413: {"description": "Upload too large"}, 422: {"description": "Unsafe archive or bad manifest"}},
)
def create_ingest_job(
    intake: IntakeDep,
    caller: WriteCaller,
    response: Response,
    file: Annotated[
        UploadFile, File(description="A ZIP (manifest.csv + images) or a CSV whose image column holds URLs.")
    ],
) -> IngestJobRead:
    report = intake.submit(file.filename or "", file.file, caller)
    response.headers["Location"] = f"/api/v1/ingest-jobs/{report.job_id}"
    return job_read(report)


@router.get("", response_model=list[IngestJobRead])
def list_ingest_jobs(jobs: JobsDep, caller: WriteCaller, offset: Offset = 0, limit: Limit = 20) -> list[IngestJobRead]:
    """The caller's jobs, newest first (all of them for an admin)."""
    return [job_read(report) for report in jobs.recent(offset=offset, limit=limit, viewer=caller)]


@router.delete("/{job_id}", response_model=IngestJobRead)
def cancel_ingest_job(intake: IntakeDep, caller: WriteCaller, job_id: str) -> IngestJobRead:
    """Cancel a queued or running job: it stops after the batch in hand, and what it stored stays. Its uploaded
    files are removed; its report is kept."""
    return job_read(intake.cancel(job_id, caller))


@router.get("/{job_id}", response_model=IngestJobRead)
def read_ingest_job(jobs: JobsDep, caller: WriteCaller, job_id: str) -> IngestJobRead:
    return job_read(jobs.report(job_id, viewer=caller))


@router.get(
    "/{job_id}/errors",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The failed rows as CSV"}},
)
def ingest_job_errors(jobs: JobsDep, caller: WriteCaller, job_id: str) -> PlainTextResponse:
    """Every failed row as CSV: its line, the manifest's columns as read (empty for a row that could not be
    read) and an `error` column with the reason. Fix the rows and upload them again."""
    failed = jobs.failed_rows(job_id, caller)
    extra = sorted({name for item in failed for name in item.row.get("attributes", {})} - set(KNOWN_COLUMNS))
    columns = ["line", *KNOWN_COLUMNS, *extra, "error"]
    return csv_response(columns, (_error_row(item) for item in failed), f"errors-{job_id}.csv")


def _error_row(item: FailedRow) -> dict[str, object]:
    row = {name: value for name, value in item.row.items() if name in KNOWN_COLUMNS and value is not None}
    row.update({name: value for name, value in item.row.get("attributes", {}).items() if name not in KNOWN_COLUMNS})
    return {**row, "line": item.line, "image": item.image, "error": item.reason}
