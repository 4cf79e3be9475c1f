"""/api/v1/ingest-jobs: bulk catalogue uploads (ZIP with manifest.csv, or a CSV of image URLs) as jobs."""

from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile, status

from app.api.deps import JobRunnerDep, Limit, Offset, RuntimeDep, SessionDep
from app.schemas import IngestJobRead
from app.services import jobs
from app.services.job_uploads import submit_upload
from app.views import job_read

router = APIRouter(prefix="/api/v1/ingest-jobs", tags=["ingest jobs"])


@router.post(
    "",
    response_model=IngestJobRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses={413: {"description": "Upload too large"}, 422: {"description": "Unsafe archive or bad manifest"}},
)
def create_ingest_job(
    runtime: RuntimeDep,
    session: SessionDep,
    runner: JobRunnerDep,
    response: Response,
    file: Annotated[
        UploadFile, File(description="A ZIP (manifest.csv + images) or a CSV whose image column holds URLs.")
    ],
) -> IngestJobRead:
    job = submit_upload(session, runtime.settings, file.filename or "", file.file)
    runner.wake()
    response.headers["Location"] = f"/api/v1/ingest-jobs/{job.id}"
    return job_read(job, jobs.job_report(session, job.id))


@router.get("", response_model=list[IngestJobRead])
def list_ingest_jobs(session: SessionDep, offset: Offset = 0, limit: Limit = 20) -> list[IngestJobRead]:
    found = jobs.list_jobs(session, offset=offset, limit=limit)
    return [job_read(job, jobs.job_report(session, job.id, max_errors=20)) for job in found]


@router.get("/{job_id}", response_model=IngestJobRead)
def read_ingest_job(session: SessionDep, job_id: str) -> IngestJobRead:
    return job_read(jobs.get_job(session, job_id), jobs.job_report(session, job_id))
