"""The query_jobs and query_items tables: a batch of photos and, per photo, its answer or its error."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow


class QueryJob(Base):
    __tablename__ = "query_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_key_id: Mapped[int | None] = mapped_column(Integer, index=True)  # None: the command line
    state: Mapped[str] = mapped_column(String(16), index=True)  # queued, running, done, failed, cancelled
    source: Mapped[str] = mapped_column(String(300))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)  # top_k, include_weak, filters
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(128))  # who claimed it (app.core.lease)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # its lease, refreshed while it runs
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class QueryItem(Base):
    __tablename__ = "query_items"

    job_id: Mapped[str] = mapped_column(ForeignKey("query_jobs.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1, 2, … in the upload's order
    name: Mapped[str] = mapped_column(String(2048))  # the member's name in the ZIP, or the URL
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # set once searched
    error: Mapped[str | None] = mapped_column(Text)  # or why it could not be
