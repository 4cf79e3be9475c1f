"""Ingest job tables: a job and its items, updated in the same transaction as the catalogue rows they
produce, so after a crash a job resumes exactly at its first unacknowledged item."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, RowId, UTCDateTime, utcnow


class IngestJob(Base):
    """A bulk ingest. Its items and counters are updated in the same transaction as the catalogue rows
    they produce, so after a crash the job resumes exactly at the first unacknowledged item."""

    __tablename__ = "ingest_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # queued, running, done, failed, cancelled
    source: Mapped[str] = mapped_column(String(2048))  # what was uploaded or which manifest was named
    work_dir: Mapped[str] = mapped_column(String(2048))  # where relative image paths resolve
    confined: Mapped[bool] = mapped_column(default=True)  # relative paths may not leave work_dir
    # The factories its rows may write, when a factory key submitted it (empty: any, for admins); and that key.
    factory_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    owner_key_id: Mapped[int | None] = mapped_column(RowId)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    run_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    stage_seconds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(String(2048))
    worker: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    turn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when it last gave up its turn
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IngestItem(Base):
    __tablename__ = "ingest_items"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("ingest_jobs.id", ondelete="CASCADE"), index=True)
    line: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # pending, done
    outcome: Mapped[str | None] = mapped_column(String(16))  # added, updated, unchanged, failed
    image: Mapped[str] = mapped_column(String(2048))
    reason: Mapped[str | None] = mapped_column(String(2048))
    row: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the parsed manifest row

    __table_args__ = (Index("ix_ingest_items_job_state", "job_id", "state", "id"), {"sqlite_autoincrement": True})
