"""The ingest job store: jobs, their items, claiming, and reports.

Claiming uses `SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; ignored by SQLite, which has one writer), so
several worker processes can share one database: each claims a different queued job, and a job whose
worker stopped sending heartbeats is taken over by another.
"""

import itertools
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.core.access import Principal
from app.core.db import begin_write, utcnow
from app.core.errors import NotFoundError
from app.core.lease import LeaseLost
from app.ingest.manifest import ManifestRow, RowError
from app.ingest.models import IngestItem, IngestJob

STAGES = ("read", "embed", "write")
TEXT_LIMIT = 2048  # the longest source, image or reason kept


@dataclass
class IngestReport:
    """What a job is and did: its state, counters and per-item errors."""

    job_id: str = ""
    state: str = ""
    source: str = ""
    total: int = 0
    done: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    elapsed_s: float = 0.0
    error: str | None = None  # why the whole job failed, if it did
    factory_ids: list[str] = field(default_factory=list)  # the factories its rows may write (empty: any)
    created_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def images_per_s(self) -> float:
        return self.added / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def items_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> str:
        stages = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.stage_seconds.items())
        return (
            f"{self.total} rows: {self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.failed} failed in {self.elapsed_s:.1f}s ({self.images_per_s:.1f} images/s; {stages})"
        )


@dataclass(frozen=True)
class FailedRow:
    line: int
    image: str
    reason: str
    row: dict[str, Any]  # the manifest row as read; empty when the row itself was unreadable


class JobStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def create(
        self,
        rows: list[ManifestRow | RowError],
        *,
        source: str,
        work_dir: str,
        confined: bool,
        job_id: str | None = None,
        owner: Principal | None = None,
    ) -> str:
        """A queued job with one item per manifest row (rows that failed parsing are done, failed, already);
        returns its id. A factory key's job may write only that key's factories."""
        owner = owner or Principal.system()
        bad = [row for row in rows if isinstance(row, RowError)]
        with self.sessions() as session:
            job = IngestJob(
                id=job_id or uuid.uuid4().hex,
                state="queued",
                source=source[:TEXT_LIMIT],
                work_dir=work_dir,
                confined=confined,
                total=len(rows),
                done=len(bad),
                failed=len(bad),
                stage_seconds=dict.fromkeys(STAGES, 0.0),
                factory_ids=[] if owner.is_admin else sorted(owner.factory_ids),
                owner_key_id=owner.key_id,
            )
            session.add(job)
            session.flush()
            items = [_item_values(job.id, row) for row in rows]
            for start in range(0, len(items), 1000):
                session.execute(insert(IngestItem), items[start : start + 1000])
            session.commit()
            return job.id

    def claim(self, worker: str, stale_after_s: float) -> str | None:
        """Take the oldest queued job (or one whose worker went silent) for `worker`; its id, or None."""
        stale = utcnow() - timedelta(seconds=stale_after_s)
        claimable = or_(IngestJob.state == "queued", and_(IngestJob.state == "running", IngestJob.heartbeat_at < stale))
        # Jobs take turns: the one that waited longest since its last turn (or never had one) goes first.
        order = (IngestJob.turn_at.is_not(None), IngestJob.turn_at, IngestJob.created_at, IngestJob.id)
        query = select(IngestJob).where(claimable).order_by(*order).limit(1)
        with self.sessions() as session:
            begin_write(session)  # SQLite: the writer lock first, so two processes cannot read the same job
            job = session.scalar(query.with_for_update(skip_locked=True))
            if job is not None:
                job.state, job.worker, job.heartbeat_at = "running", worker, utcnow()
            session.commit()
            return job.id if job is not None else None

    def heartbeat(self, job_id: str, worker: str) -> bool:
        """Refresh `worker`'s lease on a running job; False when the job is no longer its own (taken over by
        another worker, cancelled, finished)."""
        mine = (IngestJob.id == job_id, IngestJob.worker == worker, IngestJob.state == "running")
        with self.sessions() as session:
            result = session.execute(update(IngestJob).where(*mine).values(heartbeat_at=utcnow()))
            session.commit()
            return bool(getattr(result, "rowcount", 0))

    def requeue_running(self) -> int:
        """At start-up of the embedded (single-process) server: jobs left running by a crash go back in the
        queue."""
        with self.sessions() as session:
            result = session.execute(update(IngestJob).where(IngestJob.state == "running").values(state="queued"))
            session.commit()
            return int(getattr(result, "rowcount", 0) or 0)

    def requeue(self, job_id: str, worker: str | None = None) -> None:
        """A running job goes back in the queue: its slice is up, or the database was busy for now. Taking
        turns, it goes behind the jobs that waited longer. With `worker`, only while the job is still its own."""
        with self.sessions() as session:
            job = get_job(session, job_id)
            if job.state == "running" and (worker is None or job.worker == worker):
                job.state, job.turn_at = "queued", utcnow()
                session.commit()

    def others_waiting(self, job_id: str) -> bool:
        query = select(func.count()).where(IngestJob.state == "queued", IngestJob.id != job_id)
        with self.sessions() as session:
            return bool(session.scalar(query))

    def cancel(self, job_id: str, viewer: Principal) -> tuple[IngestReport, bool]:
        """Stop a queued or running job where it is; what it stored stays. Returns its report and whether its
        files may be removed now (a running job's runner removes them when it sees the cancellation)."""
        self.report(job_id, max_errors=0, viewer=viewer)  # 404 for a job the viewer may not see
        with self.sessions() as session:
            job = get_job(session, job_id)
            was = job.state
            if was in ("queued", "running"):
                job.state, job.finished_at = "cancelled", utcnow()
                session.commit()
            remove_now = job.confined and was != "running"
        return self.report(job_id), remove_now

    def unfinished_for(self, source: str) -> str | None:
        """The newest queued or running job of this source, if any."""
        query = select(IngestJob.id).where(IngestJob.source == source, IngestJob.state.in_(("queued", "running")))
        with self.sessions() as session:
            return session.scalar(query.order_by(IngestJob.created_at.desc()).limit(1))

    def fail(self, job_id: str, error: str) -> None:
        """The whole job failed, for a reason that concerns the whole job."""
        with self.sessions() as session:
            job = get_job(session, job_id)
            job.state, job.error, job.finished_at = "failed", error[:TEXT_LIMIT], utcnow()
            session.commit()

    def report(self, job_id: str, max_errors: int = 1000, viewer: Principal | None = None) -> IngestReport:
        """The job's report; a job the viewer may not see is reported as not found."""
        with self.sessions() as session:
            report = job_report(session, job_id, max_errors)
        if viewer is not None and not viewer.sees_job(report.factory_ids):
            raise NotFoundError(f"ingest job {job_id!r} not found")
        return report

    def failed_rows(self, job_id: str, viewer: Principal) -> list[FailedRow]:
        """Every failed row of the job, by line, with what was read from it (nothing for a row that could
        not be read): the rows a factory fixes and uploads again."""
        self.report(job_id, max_errors=0, viewer=viewer)  # 404 for a job the viewer may not see
        query = select(IngestItem.line, IngestItem.image, IngestItem.reason, IngestItem.row).where(
            IngestItem.job_id == job_id, IngestItem.outcome == "failed"
        )
        with self.sessions() as session:
            found = session.execute(query.order_by(IngestItem.line, IngestItem.id))
            return [FailedRow(line, image, reason or "", row or {}) for line, image, reason, row in found]

    def recent(
        self, *, offset: int = 0, limit: int = 50, max_errors: int = 20, viewer: Principal | None = None
    ) -> list[IngestReport]:
        """Newest first; only the jobs the viewer may see."""
        query = select(IngestJob.id, IngestJob.factory_ids).order_by(IngestJob.created_at.desc(), IngestJob.id)
        viewer = viewer or Principal.system()
        with self.sessions() as session:
            if viewer.is_admin:
                visible = list(session.scalars(query.offset(offset).limit(limit)))
            else:  # JSON lists compare in Python, the same on SQLite and PostgreSQL
                seen = (job_id for job_id, factories in session.execute(query) if viewer.sees_job(factories))
                visible = list(itertools.islice(seen, offset, offset + limit))
            return [job_report(session, job_id, max_errors) for job_id in visible]

    def count_items(self, job_id: str, state: str) -> int:
        query = (
            select(func.count()).select_from(IngestItem).where(IngestItem.job_id == job_id, IngestItem.state == state)
        )
        with self.sessions() as session:
            return session.scalar(query) or 0


def get_job(session: Session, job_id: str) -> IngestJob:
    job = session.get(IngestJob, job_id)
    if job is None:
        raise NotFoundError(f"ingest job {job_id!r} not found")
    return job


def hold_lease(session: Session, job_id: str, worker: str) -> None:
    """Lock the job's row for the rest of this transaction, and check that the job is still `worker`'s: the fence
    before each write a worker makes for its job. LeaseLost when another worker has claimed it meanwhile (this
    one was presumed dead: its heartbeat went stale)."""
    query = select(IngestJob.worker).where(IngestJob.id == job_id).with_for_update()
    holder = session.execute(query).scalar_one_or_none()
    if holder != worker:
        raise LeaseLost(f"ingest job {job_id} is now {holder or 'nobody'}'s, not {worker}'s")


def pending_item_ids(session: Session, job_id: str) -> list[int]:
    query = select(IngestItem.id).where(IngestItem.job_id == job_id, IngestItem.state == "pending")
    return list(session.scalars(query.order_by(IngestItem.id)))


def job_report(session: Session, job_id: str, max_errors: int = 1000) -> IngestReport:
    job = get_job(session, job_id)
    failed = select(IngestItem.line, IngestItem.image, IngestItem.reason).where(
        IngestItem.job_id == job_id, IngestItem.outcome == "failed"
    )
    errors = [
        RowError(line, image, reason or "")
        for line, image, reason in session.execute(failed.order_by(IngestItem.line).limit(max_errors))
    ]
    return IngestReport(
        job_id=job.id,
        state=job.state,
        source=job.source,
        total=job.total,
        done=job.done,
        added=job.added,
        updated=job.updated,
        unchanged=job.unchanged,
        failed=job.failed,
        errors=errors,
        stage_seconds={**dict.fromkeys(STAGES, 0.0), **job.stage_seconds},
        elapsed_s=job.run_seconds,
        error=job.error,
        factory_ids=list(job.factory_ids or []),
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


def _item_values(job_id: str, row: ManifestRow | RowError) -> dict[str, Any]:
    if isinstance(row, RowError):
        return {
            "job_id": job_id,
            "line": row.line,
            "state": "done",
            "outcome": "failed",
            "image": row.image[:TEXT_LIMIT],
            "reason": row.reason[:TEXT_LIMIT],
            "row": {},
        }
    return {
        "job_id": job_id,
        "line": row.line,
        "state": "pending",
        "outcome": None,
        "image": row.image[:TEXT_LIMIT],
        "reason": None,
        "row": asdict(row),
    }
