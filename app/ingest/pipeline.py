"""Catalogue ingestion as three stages: read (fetch, hash, decode, preprocess) → embed → write.

Reading runs on a thread pool, one batch ahead of the model where cores allow. Known bytes (same product, same
content hash) are recognised before decoding and cost no model time, so a re-run is cheap and changes nothing.
Each write batch is one transaction that stores the catalogue rows *and* marks the batch's job items done:
an item is acknowledged exactly when its result is stored, so a job killed at any point resumes at its first
unacknowledged item, and nothing is lost or done twice. Vectors go to the index after the commit; the
start-up reconcile covers a crash in between.
"""

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.catalog.keeper import IndexKeeper
from app.catalog.media import MediaStore
from app.catalog.models import Factory, Image, Product
from app.catalog.service import content_hash, new_image_row
from app.core.db import utcnow
from app.ingest.fetch import FetchPolicy, fetch_url, read_local
from app.ingest.intake import remove_job_files
from app.ingest.jobs import STAGES, TEXT_LIMIT, IngestReport, JobStore, get_job, pending_item_ids
from app.ingest.manifest import ManifestRow, read_manifest
from app.ingest.models import IngestItem
from embeddings import ImageDecoder, ImageError, LoadedImage, ModelScheduler, Preprocess

Progress = Callable[[int], None]


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


@dataclass(frozen=True)
class IngestSettings:
    batch_size: int  # images per forward pass and per write transaction
    read_workers: int  # threads that fetch and decode
    read_ahead: bool  # read the next batch while the model runs (only with cores to spare beside it)
    jobs_dir: Path  # where uploaded jobs' files are unpacked


class IngestPipeline:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        jobs: JobStore,
        fetch: FetchPolicy,
        decoder: ImageDecoder,
        preprocess: Preprocess,
        scheduler: ModelScheduler,
        keeper: IndexKeeper,
        media: MediaStore,
        model_name: str,
        settings: IngestSettings,
    ) -> None:
        self.sessions = sessions
        self.jobs = jobs
        self.fetch = fetch
        self.decoder = decoder
        self.preprocess = preprocess
        self.scheduler = scheduler
        self.keeper = keeper
        self.media = media
        self.model_name = model_name
        self.settings = settings

    def ingest_manifest(self, manifest: Path, progress: Progress | None = None) -> IngestReport:
        """Ingest a local manifest as a job run in the foreground; resumes an unfinished run of the same file."""
        source = str(manifest.resolve())
        rows = read_manifest(manifest)  # a bad header fails here, before anything is stored
        job_id = self.jobs.unfinished_for(source) or self.jobs.create(
            rows, source=source, work_dir=str(manifest.parent.resolve()), confined=False
        )
        if progress:
            progress(self.jobs.report(job_id, max_errors=0).done)
        return self.run_job(job_id, progress)

    def run_job(
        self, job_id: str, progress: Progress | None = None, stop: threading.Event | None = None
    ) -> IngestReport:
        """Process a job's pending items; returns its report. Stops between batches when `stop` is set."""
        started = time.perf_counter()
        with self.sessions() as session:
            job = get_job(session, job_id)
            job.state, job.heartbeat_at = "running", utcnow()
            session.commit()
            allowed = frozenset(job.factory_ids or [])
            context = JobContext(job.id, Path(job.work_dir), job.confined, allowed, set())
            item_ids = pending_item_ids(session, job_id)
            size = self.settings.batch_size
            batches = [item_ids[i : i + size] for i in range(0, len(item_ids), size)]
            for batch in self._read_batches(session, context, batches):
                self._embed(batch, context)
                self._write(session, batch, context, time.perf_counter() - started)
                started = time.perf_counter()
                if progress:
                    progress(len(batch))
                if stop is not None and stop.is_set():
                    break
            else:
                if job.confined:  # every item is acknowledged: the uploaded files are no longer needed
                    remove_job_files(self.settings.jobs_dir, job.id)
                job.state, job.finished_at = "done", utcnow()
                session.commit()
        self.keeper.flush()
        return self.jobs.report(job_id)

    def _read_batches(
        self, session: Session, context: JobContext, batches: list[list[int]]
    ) -> Iterator[list[ReadItem]]:
        """Yield read batches in order, each read in parallel on the pool.

        With cores to spare beyond the model's threads, the next batch is read while the model runs. Without
        (2 cores, 2 torch threads), overlapping only makes readers preempt the model's OpenMP threads, which
        then stall each other at every barrier; reading between forward passes measured faster there.
        """
        read_ahead = self.settings.read_ahead
        with ThreadPoolExecutor(self.settings.read_workers, thread_name_prefix="ingest-read") as pool:

            def submit(index: int) -> list[Future[ReadItem]]:
                items = _load_items(session, context, batches, index)
                return [pool.submit(self._read, context, item) for item in items]

            pending = submit(0)
            for index in range(1, len(batches) + 1):
                upcoming = submit(index) if read_ahead else []
                items = [future.result() for future in pending]
                context.stage_seconds["read"] += sum(item.seconds for item in items)
                yield items
                pending = upcoming if read_ahead else submit(index)

    def _read(self, context: JobContext, item: ReadItem) -> ReadItem:
        started = time.perf_counter()
        row = item.row
        try:
            if context.factory_ids and row.factory_id not in context.factory_ids:
                raise ValueError(f"this job's key may not write factory {row.factory_id!r}")
            if row.image.startswith(("http://", "https://")):
                data = fetch_url(row.image, self.fetch)
            elif "://" in row.image:
                raise ValueError(f"unsupported URL scheme in {row.image!r}; use http(s) or a relative path")
            else:
                data = read_local(row.image, context.base_dir, self.decoder.max_bytes, context.confine)
            item.digest = content_hash(data)
            if (row.product_id, item.digest) not in context.known:
                item.loaded = self.decoder.decode(data)
                item.pixels = self.preprocess(item.loaded.image)
                self.media.save(item.digest, item.loaded.image)  # here, not in the serial write stage
        except (ImageError, ValueError, OSError) as exc:
            item.error = str(exc)
        item.seconds = time.perf_counter() - started
        return item

    def _embed(self, batch: list[ReadItem], context: JobContext) -> None:
        started = time.perf_counter()
        todo = [item for item in batch if item.pixels is not None]
        if todo:
            vectors = self.scheduler.embed_bulk(np.stack([item.pixels for item in todo if item.pixels is not None]))
            for item, vector in zip(todo, vectors, strict=True):
                item.vector = vector
        context.stage_seconds["embed"] += time.perf_counter() - started

    def _write(self, session: Session, batch: list[ReadItem], context: JobContext, batch_seconds: float) -> None:
        """One transaction: catalogue rows, the items' outcomes and the job's counters."""
        started = time.perf_counter()
        new_images: list[tuple[Image, np.ndarray]] = []
        outcomes: dict[int, tuple[str, str | None]] = {}
        for item in batch:
            outcome, reason, image = self._apply(session, item, context)
            outcomes[item.item_id] = (outcome, reason)
            if image is not None and item.vector is not None:
                new_images.append((image, item.vector))
        session.flush()  # assigns image ids
        context.stage_seconds["write"] += time.perf_counter() - started
        _acknowledge(session, context.job_id, outcomes, context.stage_seconds, batch_seconds)
        session.commit()
        if new_images:
            ids = np.array([image.id for image, _ in new_images])
            self.keeper.index.upsert(ids, np.stack([vector for _, vector in new_images]))
        context.stage_seconds = dict.fromkeys(STAGES, 0.0)

    def _apply(self, session: Session, item: ReadItem, context: JobContext) -> tuple[str, str | None, Image | None]:
        row = item.row
        if item.error:
            return "failed", item.error, None
        conflict, changed = _upsert_owner(session, row)
        if conflict:
            return "failed", conflict, None
        key = (row.product_id, item.digest)
        if key in context.known or item.loaded is None or item.vector is None:
            return ("updated" if changed else "unchanged"), None, None
        context.known.add(key)
        image = new_image_row(row.product_id, item.digest, row.image, item.loaded, item.vector, self.model_name)
        session.add(image)
        return "added", None, image


def _load_items(session: Session, context: JobContext, batches: list[list[int]], index: int) -> list[ReadItem]:
    if index >= len(batches):
        return []
    items = list(session.scalars(select(IngestItem).where(IngestItem.id.in_(batches[index])).order_by(IngestItem.id)))
    rows = [ReadItem(item.id, ManifestRow(**item.row)) for item in items]
    query = select(Image.product_id, Image.content_hash).where(
        Image.product_id.in_(sorted({item.row.product_id for item in rows}))
    )
    context.known.update(session.execute(query).tuples())
    return rows


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
