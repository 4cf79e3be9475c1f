"""The saved_searches table (a photo a key watches, with how far the catalogue has been checked for it) and
saved_search_matches (each confident match found later, and whether its webhook was delivered)."""

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, RowId, UTCDateTime, utcnow


class SavedSearch(Base):
    __tablename__ = "saved_searches"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    owner_key_id: Mapped[int] = mapped_column(Integer, index=True)
    name: Mapped[str] = mapped_column(String(255))
    photo_hash: Mapped[str] = mapped_column(String(64))  # the photo, kept under the data dir's saved/ folder
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    checked_to: Mapped[int] = mapped_column(Integer)  # catalogue image ids up to this one have been checked
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SavedMatch(Base):
    __tablename__ = "saved_search_matches"
    __table_args__ = (UniqueConstraint("saved_id", "image_id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    saved_id: Mapped[int] = mapped_column(ForeignKey("saved_searches.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[str] = mapped_column(String(255))
    factory_id: Mapped[str] = mapped_column(String(255))
    match_level: Mapped[str] = mapped_column(String(32))
    similarity: Mapped[float] = mapped_column(Float)
    found_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)  # to the webhook (or there is none)
