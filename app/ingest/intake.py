"""Turn an uploaded ZIP or CSV into a queued ingest job, with its files under the jobs directory (<id>/)."""

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from app.core.access import Principal
from app.core.errors import InvalidInputError, PayloadTooLargeError
from app.ingest.archive import ZipLimits, extract_catalogue
from app.ingest.jobs import IngestReport, JobStore
from app.ingest.manifest import ManifestLimits, read_manifest

ZIP_MAGIC = b"PK\x03\x04"
CHUNK = 1024 * 1024


class UploadIntake:
    def __init__(
        self,
        *,
        jobs: JobStore,
        jobs_dir: Path,
        zip_limits: ZipLimits,
        max_bytes: int,
        manifest_limits: ManifestLimits,
        on_submitted: Callable[[], None] | None = None,
    ) -> None:
        self.manifest_limits = manifest_limits
        self.jobs = jobs
        self.jobs_dir = jobs_dir
        self.zip_limits = zip_limits
        self.max_bytes = max_bytes
        self.on_submitted = on_submitted  # a job was queued: the runner may look now

    def submit(self, filename: str, upload: BinaryIO, owner: Principal) -> IngestReport:
        """Store, check and unpack the upload, read its manifest, queue the job for `owner` (a factory key's job
        writes only its factories). Bad input leaves nothing behind."""
        job_id = uuid.uuid4().hex
        job_dir = self.jobs_dir / job_id
        job_dir.mkdir(parents=True)
        try:
            manifest = self._unpack(filename, upload, job_dir)
            rows = read_manifest(manifest, self.manifest_limits)
            source = f"upload:{filename}"
            self.jobs.create(
                rows, source=source, work_dir=str(manifest.parent), confined=True, job_id=job_id, owner=owner
            )
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        if self.on_submitted:
            self.on_submitted()
        return self.jobs.report(job_id)

    def _unpack(self, filename: str, upload: BinaryIO, job_dir: Path) -> Path:
        head = upload.read(4)
        upload.seek(0)
        files = job_dir / "files"
        files.mkdir()
        if head == ZIP_MAGIC:
            archive = job_dir / "upload.zip"
            save_upload(upload, archive, self.max_bytes)
            manifest = extract_catalogue(archive, files, self.zip_limits)
            archive.unlink()
            return manifest
        if filename.lower().endswith((".csv", ".txt")) or not filename:
            manifest = files / "manifest.csv"
            save_upload(upload, manifest, self.max_bytes)
            return manifest
        raise InvalidInputError(f"{filename!r} is neither a ZIP archive nor a CSV manifest")

    def cancel(self, job_id: str, viewer: Principal) -> IngestReport:
        """Cancel a job the viewer may see; an uploaded job's files go at once if no runner is using them."""
        report, remove_now = self.jobs.cancel(job_id, viewer)
        if remove_now:
            remove_job_files(self.jobs_dir, job_id)
        return report


def save_upload(upload: BinaryIO, target: Path, max_bytes: int) -> None:
    """Stream an upload to `target`, refusing it past `max_bytes` (413)."""
    written = 0
    with target.open("wb") as sink:
        while chunk := upload.read(CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise PayloadTooLargeError(f"upload is larger than the {max_bytes:,}-byte limit")
            sink.write(chunk)


def remove_job_files(jobs_dir: Path, job_id: str) -> None:
    """An uploaded job's files are only needed while it runs: its images are in the media store by then."""
    shutil.rmtree(jobs_dir / job_id, ignore_errors=True)
