"""The write stage of ingest: one transaction per batch that stores the catalogue rows *and* acknowledges the
batch's items with their outcomes, so an item is acknowledged exactly when its result is stored.

Each row is applied inside a savepoint: a row the database refuses (a value too long for its column, a product
id taken at the same moment) is that row's error, and the rest of the batch is stored. A database that is busy
for now (a locked SQLite file) is waited out: the batch is written again, up to WRITE_ATTEMPTS times.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from app.catalog.index_sync import drop_if_deleted, fields_for
from app.catalog.models import Factory, Image, Product
from app.catalog.service import new_image_row
from app.core.db import DatabaseError, begin_write, transient_retry_after, utcnow
from app.core.lease import LeaseLost
from app.ingest.jobs import STAGES, TEXT_LIMIT, get_job, hold_lease
from app.ingest.manifest import ManifestRow
from app.ingest.models import IngestItem
from embeddings import LoadedImage
from index import VectorIndex

WRITE_ATTEMPTS = 4


@dataclass
class ReadItem:
    item_id: int
    row: ManifestRow
    digest: str = ""
    loaded: LoadedImage | None = None  # None when the bytes are already known for this product
    pixels: np.ndarray | None = None  # preprocessed, for the model
    vector: np.ndarray | None = None  # the embedding
    error: str = ""
    seconds: float = 0.0


@dataclass
class JobContext:
    job_id: str
    base_dir: Path
    confine: bool
    factory_ids: frozenset[str]  # the factories its rows may write; empty: any
    known: set[tuple[str, str]]  # (product_id, content hash) already stored
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    worker: str = ""  # who holds the job: each batch is written only while it still does


class BatchWriter:
    def __init__(self, index: VectorIndex, model_name: str, on_outcomes: Callable[[list[str]], None]) -> None:
        self.index = index
        self.model_name = model_name
        self.on_outcomes = on_outcomes  # hears each committed batch's outcomes (metrics)

    def write(self, session: Session, batch: list[ReadItem], context: JobContext, batch_seconds: float) -> None:
        for attempt in count(1):
            try:
                self._write(session, batch, context, batch_seconds)
                return
            except LeaseLost:  # another worker took the job over: this batch is its to write
                session.rollback()
                raise
            except DatabaseError as exc:
                session.rollback()
                retry = transient_retry_after(exc)
                if retry is None or attempt == WRITE_ATTEMPTS:
                    raise
                time.sleep(retry * attempt)

    def _write(self, session: Session, batch: list[ReadItem], context: JobContext, batch_seconds: float) -> None:
        started = time.perf_counter()
        begin_write(session)  # before the first savepoint: see begin_write
        if context.worker:
            hold_lease(session, context.job_id, context.worker)  # the job's row stays locked until the commit
        new_images: list[tuple[Image, np.ndarray]] = []
        added: set[tuple[str, str]] = set()  # (product, content hash) stored by this batch so far
        outcomes: dict[int, tuple[str, str | None]] = {}
        for item in batch:
            try:
                with session.begin_nested():  # a savepoint: this row alone is undone if the database refuses it
                    outcome, reason, image = self._apply(session, item, context.known, added)
            except (DataError, IntegrityError) as exc:
                outcome, reason, image = "failed", f"not stored: {str(exc.orig).splitlines()[0]}", None
            outcomes[item.item_id] = (outcome, reason)
            if image is not None and item.vector is not None:
                new_images.append((image, item.vector))
                added.add((item.row.product_id, item.digest))
        ids = np.array([image.id for image, _ in new_images], dtype=np.int64)
        fields = fields_for(session, self.index, ids) if new_images else None  # read before the commit ends
        context.stage_seconds["write"] += time.perf_counter() - started
        _acknowledge(session, context.job_id, outcomes, context.stage_seconds, batch_seconds)
        session.commit()
        self.on_outcomes([outcome for outcome, _ in outcomes.values()])
        context.known |= added
        if new_images:
            self.index.upsert(ids, np.stack([vector for _, vector in new_images]), fields)
            drop_if_deleted(session, self.index, ids)  # a product deleted while this batch was being written
            session.rollback()  # end the read: the next batch begins its own write
        context.stage_seconds = dict.fromkeys(STAGES, 0.0)

    def _apply(
        self, session: Session, item: ReadItem, known: set[tuple[str, str]], added: set[tuple[str, str]]
    ) -> tuple[str, str | None, Image | None]:
        row = item.row
        if item.error:
            return "failed", item.error, None
        conflict, changed = _upsert_owner(session, row)
        if conflict:
            return "failed", conflict, None
        key = (row.product_id, item.digest)
        if key in known or key in added or item.loaded is None or item.vector is None:
            return ("updated" if changed else "unchanged"), None, None
        image = new_image_row(row.product_id, item.digest, row.image, item.loaded, item.vector, self.model_name)
        session.add(image)
        session.flush()  # the image's id, and any refusal of this row, now
        return "added", None, image


def _acknowledge(
    session: Session,
    job_id: str,
    outcomes: dict[int, tuple[str, str | None]],
    stage_seconds: dict[str, float],
    batch_seconds: float,
) -> None:
    for item in session.scalars(select(IngestItem).where(IngestItem.id.in_(list(outcomes)))):
        item.state, (item.outcome, reason) = "done", outcomes[item.id]
        item.reason = reason[:TEXT_LIMIT] if reason else None
    job = get_job(session, job_id)
    counts = [outcome for outcome, _ in outcomes.values()]
    job.done += len(counts)
    for name in ("added", "updated", "unchanged", "failed"):
        setattr(job, name, getattr(job, name) + counts.count(name))
    job.stage_seconds = {name: job.stage_seconds.get(name, 0.0) + seconds for name, seconds in stage_seconds.items()}
    job.run_seconds += batch_seconds
    job.heartbeat_at = utcnow()


def _upsert_owner(session: Session, row: ManifestRow) -> tuple[str, bool]:
    """Create or update the row's factory and product: (reason the row conflicts, or "", changed)."""
    product = session.get(Product, row.product_id)
    if product is not None and product.factory_id != row.factory_id:
        return f"product {row.product_id!r} belongs to factory {product.factory_id!r}, not {row.factory_id!r}", False
    changed = False
    factory = session.get(Factory, row.factory_id)
    if factory is None:
        name, region = row.factory_name or row.factory_id, row.region or None
        session.add(Factory(id=row.factory_id, name=name, region=region, attributes={}))
        changed = True
    else:
        changed |= _set_if_given(factory, name=row.factory_name, region=row.region)
    if product is None:
        session.add(
            Product(
                id=row.product_id,
                factory_id=row.factory_id,
                title=row.title or row.product_id,
                category=row.category or None,
                price=row.price,
                moq=row.moq,
                attributes=row.attributes,
            )
        )
        return "", True
    attributes = {**product.attributes, **row.attributes}
    changed |= _set_if_given(
        product, title=row.title, category=row.category, price=row.price, moq=row.moq, attributes=attributes
    )
    return "", changed


def _set_if_given(target: Factory | Product, **values: object) -> bool:
    """Overwrite only with values the manifest gives (an empty cell keeps what is stored); True if any changed."""
    changed = False
    for name, value in values.items():
        if value not in (None, "") and getattr(target, name) != value:
            setattr(target, name, value)
            changed = True
    return changed
