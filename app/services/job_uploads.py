"""Turn an uploaded ZIP or CSV into a queued ingest job, with its files under data_dir/jobs/<id>/."""

import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from app.config import Settings
from app.models import IngestJob
from app.services import jobs
from app.services.archive import ZipLimits, extract_catalogue
from app.services.errors import InvalidInputError, PayloadTooLargeError
from app.services.manifest import read_manifest

ZIP_MAGIC = b"PK\x03\x04"


def submit_upload(session: Session, settings: Settings, filename: str, upload: BinaryIO) -> IngestJob:
    """Store, check and unpack the upload, read its manifest, queue the job. Bad input leaves nothing behind."""
    job_id = uuid.uuid4().hex
    job_dir = settings.jobs_dir / job_id
    job_dir.mkdir(parents=True)
    try:
        manifest = _unpack(settings, filename, upload, job_dir)
        rows = read_manifest(manifest)
        return jobs.create_job(
            session,
            rows,
            source=f"upload:{filename}"[:2048],
            work_dir=str(manifest.parent),
            confined=True,
            job_id=job_id,
        )
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise


def _unpack(settings: Settings, filename: str, upload: BinaryIO, job_dir: Path) -> Path:
    head = upload.read(4)
    upload.seek(0)
    files = job_dir / "files"
    files.mkdir()
    if head == ZIP_MAGIC:
        archive = job_dir / "upload.zip"
        _save(upload, archive, settings.max_job_upload_bytes)
        limits = ZipLimits(settings.max_zip_total_bytes, settings.max_zip_files, settings.max_zip_ratio)
        manifest = extract_catalogue(archive, files, limits)
        archive.unlink()
        return manifest
    if filename.lower().endswith((".csv", ".txt")) or not filename:
        manifest = files / "manifest.csv"
        _save(upload, manifest, settings.max_job_upload_bytes)
        return manifest
    raise InvalidInputError(f"{filename!r} is neither a ZIP archive nor a CSV manifest")


def _save(upload: BinaryIO, target: Path, max_bytes: int) -> None:
    written = 0
    with target.open("wb") as sink:
        while chunk := upload.read(1024 * 1024):
            written += len(chunk)
            if written > max_bytes:
                raise PayloadTooLargeError(f"upload is larger than the {max_bytes:,}-byte limit")
            sink.write(chunk)


def remove_job_files(settings: Settings, job: IngestJob) -> None:
    """An uploaded job's files are only needed while it runs: its images are in the media store by then."""
    job_dir = settings.jobs_dir / job.id
    if job.confined and job_dir.is_dir():
        shutil.rmtree(job_dir, ignore_errors=True)
