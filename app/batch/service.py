"""Batch query jobs: a ZIP of photos or a list of image URLs in, each searched in turn, its top factories kept.

A job is resumable: each photo's answer (or error) is committed as it is found, so a job stopped at any
point (shutdown, crash) goes on from the first photo without one. Bad photos are per-item errors; only a
problem with the whole upload refuses the job. The uploaded files go once the job is over.
"""

import csv
import io
import logging
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.batch.models import QueryItem, QueryJob
from app.core.access import Principal
from app.core.db import begin_write, utcnow
from app.core.errors import AuthenticationError, InvalidInputError, NotFoundError, PayloadTooLargeError
from app.core.lease import worker_name
from app.ingest.archive import ZipLimits, extract_members
from app.ingest.fetch import Fetcher
from app.ingest.intake import ZIP_MAGIC, save_upload
from app.search.options import QueryPhoto, SearchFilters, SearchOptions
from app.search.pipeline import SearchResult, SearchService

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
FINISHED = ("done", "failed", "cancelled")
MAX_TOP_K = 10


@dataclass(frozen=True)
class QueryPlan:
    """What each photo of a job is searched with."""

    top_k: int = 3
    include_weak: bool = False
    filters: dict[str, Any] = field(default_factory=dict)  # region, category, max_moq, min_price, max_price

    def options(self) -> SearchOptions:
        return SearchOptions(top_k=self.top_k, include_weak=self.include_weak, filters=SearchFilters(**self.filters))


@dataclass(frozen=True)
class QueryJobInfo:
    id: str
    state: str
    source: str
    total: int
    done: int
    failed: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    options: dict[str, Any]


@dataclass(frozen=True)
class ItemAnswer:
    number: int
    name: str
    answer: dict[str, Any] | None
    error: str | None


class BatchQueries:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        search: SearchService,
        fetcher: Fetcher,
        jobs_dir: Path,
        zip_limits: ZipLimits,
        max_bytes: int,
        max_items: int,
        on_submitted: Callable[[], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.search = search
        self.fetcher = fetcher
        self.jobs_dir = jobs_dir
        self.zip_limits = zip_limits
        self.max_bytes = max_bytes
        self.max_items = max_items
        self.on_submitted = on_submitted

    # --- submitting and reading ------------------------------------------------------------------------

    def submit(self, filename: str, upload: BinaryIO, plan: QueryPlan, owner: Principal) -> QueryJobInfo:
        if owner.role is None:
            raise AuthenticationError("batch query jobs need an API key")
        if not 1 <= plan.top_k <= MAX_TOP_K:
            raise InvalidInputError(f"top_k must be 1..{MAX_TOP_K}, got {plan.top_k}")
        job_id = uuid.uuid4().hex
        files = self.jobs_dir / job_id
        files.mkdir(parents=True)
        try:
            names = self._unpack(filename, upload, files)
            if not names:
                raise InvalidInputError("the upload holds no photos (JPEG, PNG, WebP, GIF, BMP or TIFF) and no URLs")
            if len(names) > self.max_items:
                raise InvalidInputError(f"the upload holds {len(names):,} photos; the limit is {self.max_items:,}")
            with self.sessions.begin() as session:
                session.add(
                    QueryJob(
                        id=job_id,
                        owner_key_id=owner.key_id,
                        state="queued",
                        source=f"upload:{filename}"[:300],
                        options=asdict(plan),
                        total=len(names),
                        done=0,
                        failed=0,
                    )
                )
                session.flush()  # the job before its items (PostgreSQL checks the foreign key at once)
                session.add_all(QueryItem(job_id=job_id, number=n, name=name) for n, name in enumerate(names, 1))
        except BaseException:
            shutil.rmtree(files, ignore_errors=True)
            raise
        if self.on_submitted:
            self.on_submitted()
        return self.get(job_id, owner)

    def get(self, job_id: str, viewer: Principal) -> QueryJobInfo:
        with self.sessions() as session:
            return _info(self._visible(session, job_id, viewer))

    def recent(self, viewer: Principal, offset: int = 0, limit: int = 20) -> list[QueryJobInfo]:
        statement = select(QueryJob).order_by(QueryJob.created_at.desc(), QueryJob.id).offset(offset).limit(limit)
        if not viewer.is_admin:
            statement = statement.where(QueryJob.owner_key_id == viewer.key_id, QueryJob.owner_key_id.is_not(None))
        with self.sessions() as session:
            return [_info(job) for job in session.scalars(statement)]

    def results(self, job_id: str, viewer: Principal) -> list[ItemAnswer]:
        with self.sessions() as session:
            self._visible(session, job_id, viewer)
            items = session.scalars(select(QueryItem).where(QueryItem.job_id == job_id).order_by(QueryItem.number))
            return [ItemAnswer(i.number, i.name, i.answer, i.error) for i in items]

    def cancel(self, job_id: str, viewer: Principal) -> QueryJobInfo:
        """A queued or running job stops after the photo in hand; its answers so far stay."""
        with self.sessions.begin() as session:
            job = self._visible(session, job_id, viewer)
            if job.state not in FINISHED:
                job.state, job.finished_at = "cancelled", utcnow()
        shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)
        return self.get(job_id, viewer)

    # --- running ---------------------------------------------------------------------------------------

    def claim(self, worker: str, stale_after_s: float) -> str | None:
        """Take the oldest queued job, one whose worker went silent (no heartbeat for `stale_after_s`), or one this
        worker left off, for `worker`; its id, or None. Rows another worker has locked are skipped (PostgreSQL)."""
        silent = or_(
            QueryJob.heartbeat_at.is_(None),
            QueryJob.heartbeat_at < utcnow() - timedelta(seconds=stale_after_s),
            QueryJob.worker == worker,
        )
        claimable = or_(QueryJob.state == "queued", and_(QueryJob.state == "running", silent))
        query = select(QueryJob).where(claimable).order_by(QueryJob.created_at, QueryJob.id).limit(1)
        with self.sessions() as session:
            begin_write(session)  # SQLite: the writer lock first, so two processes cannot read the same job
            job = session.scalar(query.with_for_update(skip_locked=True))
            if job is None:
                return None
            job.state, job.worker, job.heartbeat_at = "running", worker, utcnow()
            job_id = job.id
            session.commit()
            return job_id

    def heartbeat(self, job_id: str, worker: str) -> bool:
        """Refresh `worker`'s lease on a running job; False when the job is no longer its own."""
        mine = (QueryJob.id == job_id, QueryJob.worker == worker, QueryJob.state == "running")
        with self.sessions.begin() as session:
            return bool(
                getattr(session.execute(update(QueryJob).where(*mine).values(heartbeat_at=utcnow())), "rowcount", 0)
            )

    def release(self, job_id: str, worker: str) -> None:
        """A worker stopping mid-job puts it back in the queue, for any worker to go on with at once."""
        mine = (QueryJob.id == job_id, QueryJob.worker == worker, QueryJob.state == "running")
        with self.sessions.begin() as session:
            session.execute(update(QueryJob).where(*mine).values(state="queued"))

    def requeue_running(self) -> int:
        """At start-up of the embedded (single-process) server: jobs left running by a crash go back in the queue."""
        with self.sessions.begin() as session:
            result = session.execute(update(QueryJob).where(QueryJob.state == "running").values(state="queued"))
            return int(getattr(result, "rowcount", 0) or 0)

    def run_next(self, stop: threading.Event, worker: str | None = None, stale_after_s: float = 300.0) -> bool:
        """Claim a job and work on it until it ends or `stop` is set; False when there was none."""
        worker = worker or worker_name()
        job_id = self.claim(worker, stale_after_s)
        if job_id is None:
            return False
        self.run(job_id, worker, stop)
        return True

    def run(self, job_id: str, worker: str, stop: threading.Event) -> str:
        """Answer a claimed job's photos in turn until it ends or `stop` is set. Returns "done", "cancelled",
        "stopped" (it stays claimed), or "lost": another worker took it over, and this one wrote nothing more."""
        with self.sessions() as session:
            job = session.get(QueryJob, job_id)
            if job is None:
                return "lost"
            options = QueryPlan(**job.options).options()
        while not stop.is_set():
            with self.sessions() as session:
                item = session.scalars(
                    select(QueryItem)
                    .where(QueryItem.job_id == job_id, QueryItem.answer.is_(None), QueryItem.error.is_(None))
                    .order_by(QueryItem.number)
                ).first()
                state, holder = session.execute(
                    select(QueryJob.state, QueryJob.worker).where(QueryJob.id == job_id)
                ).one()
                number, name = (item.number, item.name) if item else (0, "")
            if holder != worker:
                return "lost"
            if state != "running":
                return str(state)  # cancelled meanwhile
            if item is None:
                return self._finish(job_id, worker)
            if not self._record(job_id, worker, number, *self._answer(name, job_id, options)):
                return "lost"
        return "stopped"

    def _answer(self, name: str, job_id: str, options: SearchOptions) -> tuple[dict[str, Any] | None, str | None]:
        try:
            if name.startswith(("http://", "https://")):
                data = self.fetcher.fetch(name)
            else:
                path = self.jobs_dir / job_id / name
                if path.stat().st_size > self.max_bytes:
                    return None, f"the photo is over {self.max_bytes:,} bytes"
                data = path.read_bytes()
            return summary(self.search.run([QueryPhoto(data)], None, options)), None
        except (ValueError, OSError) as exc:  # a bad photo or URL: this item's error (image and fetch errors)
            return None, str(exc) or type(exc).__name__
        except (InvalidInputError, PayloadTooLargeError) as exc:
            return None, str(exc)
        except Exception as exc:  # anything else: this photo's error, so that one bad photo cannot stall the job
            log.exception("query job %s: photo %s", job_id, name)
            return None, f"could not be searched ({type(exc).__name__})"

    def _record(self, job_id: str, worker: str, number: int, answer: dict[str, Any] | None, error: str | None) -> bool:
        """Store one photo's answer, with the job's row locked, while the job is still `worker`'s (False if not:
        nothing is written); each answer also renews the lease."""
        with self.sessions.begin() as session:
            begin_write(session)
            job = session.get(QueryJob, job_id, with_for_update=True)
            if job is None or job.worker != worker:
                return False
            item = session.get(QueryItem, (job_id, number))
            if item is None or item.answer is not None or item.error is not None:
                return True
            item.answer, item.error = answer, error
            job.done += 1
            job.failed += error is not None
            job.heartbeat_at = utcnow()
            return True

    def _finish(self, job_id: str, worker: str) -> str:
        with self.sessions.begin() as session:
            begin_write(session)
            job = session.get(QueryJob, job_id, with_for_update=True)
            if job is None or job.worker != worker:
                return "lost"
            if job.state == "running":
                job.state, job.finished_at = "done", utcnow()
            state = job.state
        shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)
        return state

    # --- helpers ----------------------------------------------------------------------------------------

    def _visible(self, session: Session, job_id: str, viewer: Principal) -> QueryJob:
        job = session.get(QueryJob, job_id)
        if job is None or not viewer.owns(job.owner_key_id):
            raise NotFoundError(f"query job {job_id!r} not found")
        return job

    def _unpack(self, filename: str, upload: BinaryIO, files: Path) -> list[str]:
        head = upload.read(4)
        upload.seek(0)
        if head == ZIP_MAGIC:
            archive = files / ".upload.zip"
            save_upload(upload, archive, self.max_bytes)
            names = extract_members(archive, files, self.zip_limits)
            archive.unlink()
            photos = [n for n in names if n.suffix.lower() in IMAGE_SUFFIXES and not n.name.startswith(".")]
            return sorted(n.as_posix() for n in photos)
        if filename.lower().endswith((".csv", ".txt")) or not filename:
            data = upload.read(self.max_bytes + 1)
            if len(data) > self.max_bytes:
                raise PayloadTooLargeError(f"the list is over {self.max_bytes:,} bytes")
            return read_urls(data)
        raise InvalidInputError(f"{filename!r} is neither a ZIP of photos nor a CSV or text list of image URLs")


def read_urls(data: bytes) -> list[str]:
    """Image URLs, one per line, or in a CSV's `url` or `image` column."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError("the list is not UTF-8 text") from None
    rows = list(csv.reader(io.StringIO(text)))
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    column = next((header.index(name) for name in ("url", "image") if name in header), None)
    cells = [row[column] for row in rows[1:] if len(row) > column] if column is not None else [r[0] for r in rows if r]
    urls = [cell.strip() for cell in cells if cell.strip()]
    bad = [url for url in urls if not url.lower().startswith(("http://", "https://")) or len(url) > 2048]
    if bad:
        raise InvalidInputError(f"not an http(s) URL: {bad[0][:200]!r} ({len(bad)} such lines)")
    return urls


def summary(result: SearchResult) -> dict[str, Any]:
    """What a job keeps of one answer: its top factories with their best product, and the likely categories."""
    factories = []
    for ranked in result.factories:
        best = ranked.matches[0]
        factory, product = result.factory_rows[ranked.factory_id], result.product_rows.get(best.product_id)
        factories.append(
            {
                "factory_id": factory.id,
                "name": factory.name,
                "region": factory.region,
                "match_level": best.level.value,
                "confident": ranked.confident,
                "score": round(ranked.score, 4),
                "similarity": round(best.similarity, 4),
                "product_id": best.product_id,
                "title": product.title if product else None,
                "image_id": best.image_id,
            }
        )
    categories = [{"category": c.category, "confidence": c.confidence} for c in result.categories]
    return {"confident_match": result.confident_match, "factories": factories, "categories": categories}


def _info(job: QueryJob) -> QueryJobInfo:
    return QueryJobInfo(
        job.id,
        job.state,
        job.source,
        job.total,
        job.done,
        job.failed,
        job.error,
        job.created_at,
        job.finished_at,
        dict(job.options),
    )
