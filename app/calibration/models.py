"""The calibrations table: each run of `sourcelens calibrate`, with the thresholds it fitted for a model on the
catalogue as it was (its image count and newest image id), the target and what it measured."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, RowId, UTCDateTime, utcnow


class Calibration(Base):
    __tablename__ = "calibrations"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(255), index=True)
    catalogue_images: Mapped[int] = mapped_column(Integer)
    newest_image_id: Mapped[int] = mapped_column(Integer)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON)
    target: Mapped[float] = mapped_column(Float)
    measured: Mapped[dict[str, Any]] = mapped_column(JSON)  # rates, query counts, seconds
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
