"""Catalogue ingestion as three stages: read (fetch, hash, decode, preprocess) → embed → write (writer.py).

Reading runs on a thread pool, one batch ahead of the model where cores allow. Known bytes (same product, same
content hash) are recognised before decoding and cost no model time, so a re-run is cheap and changes nothing.
Each write batch is one transaction that stores the catalogue rows *and* marks the batch's job items done:
an item is acknowledged exactly when its result is stored, so a job killed at any point resumes at its first
unacknowledged item, and nothing is lost or done twice. Vectors go to the index after the commit; the
start-up reconcile covers a crash in between.

A job runs until it is done, cancelled, asked to stop, or its time slice is up (then another job gets a turn).
"""

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.catalog.keeper import IndexKeeper
from app.catalog.media import MediaStore
from app.catalog.models import Image
from app.catalog.service import content_hash
from app.core.db import begin_write, utcnow
from app.core.lease import worker_name
from app.core.metrics import Metrics
from app.ingest.fetch import Fetcher, read_local
from app.ingest.intake import remove_job_files
from app.ingest.jobs import IngestReport, JobStore, get_job, hold_lease, pending_item_ids
from app.ingest.manifest import ManifestLimits, ManifestRow, read_manifest
from app.ingest.models import IngestItem, IngestJob
from app.ingest.writer import BatchWriter, JobContext, ReadItem
from embeddings import ImageDecoder, ImageError, ModelScheduler, Preprocess

Progress = Callable[[int], None]


@dataclass(frozen=True)
class IngestSettings:
    batch_size: int  # images per forward pass and per write transaction
    read_workers: int  # threads that fetch and decode
    read_ahead: bool  # read the next batch while the model runs (only with cores to spare beside it)
    jobs_dir: Path  # where uploaded jobs' files are unpacked
    manifest_limits: ManifestLimits


class IngestPipeline:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        jobs: JobStore,
        fetcher: Fetcher,
        decoder: ImageDecoder,
        preprocess: Preprocess,
        scheduler: ModelScheduler,
        keeper: IndexKeeper,
        media: MediaStore,
        model_name: str,
        settings: IngestSettings,
        metrics: Metrics | None = None,
        on_stored: Callable[[str], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.on_stored = on_stored  # a new image's stored copy is written: derive what searches need from it
        self.jobs = jobs
        self.fetcher = fetcher
        self.decoder = decoder
        self.preprocess = preprocess
        self.scheduler = scheduler
        self.keeper = keeper
        self.media = media
        self.metrics = metrics or Metrics()
        self.writer = BatchWriter(keeper.index, model_name, self._count)
        self.settings = settings

    def ingest_manifest(self, manifest: Path, progress: Progress | None = None) -> IngestReport:
        """Ingest a local manifest as a job run in the foreground; resumes an unfinished run of the same file."""
        source = str(manifest.resolve())
        rows = read_manifest(manifest, self.settings.manifest_limits)  # a bad header fails before anything is stored
        job_id = self.jobs.unfinished_for(source) or self.jobs.create(
            rows, source=source, work_dir=str(manifest.parent.resolve()), confined=False
        )
        if progress:
            progress(self.jobs.report(job_id, max_errors=0).done)
        return self.run_job(job_id, progress)

    def run_job(
        self,
        job_id: str,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        until: float | None = None,
        worker: str | None = None,
    ) -> IngestReport:
        """Process a job's pending items and return its report. Between batches it stops when `stop` is set, the
        job was cancelled, or time.monotonic() passed `until` (the job's slice is up); it then stays claimed.

        `worker`: the runner that claimed the job; each batch is written only while the job is still its own
        (LeaseLost otherwise). None: run in the foreground, as this process (the job is taken as it is)."""
        started = time.perf_counter()
        with self.sessions() as session:
            begin_write(session)
            if worker is not None:
                hold_lease(session, job_id, worker)
            job = get_job(session, job_id)
            if job.state not in ("queued", "running"):
                return self.jobs.report(job_id)
            job.worker = worker = worker or worker_name()
            job.state, job.heartbeat_at = "running", utcnow()
            session.commit()
            context = JobContext(job.id, Path(job.work_dir), job.confined, frozenset(job.factory_ids or []), set())
            context.worker = worker
            item_ids = pending_item_ids(session, job_id)
            size = self.settings.batch_size
            batches = [item_ids[i : i + size] for i in range(0, len(item_ids), size)]
            for batch in self._read_batches(session, context, batches):
                self._embed(batch, context)
                self.writer.write(session, batch, context, time.perf_counter() - started)
                started = time.perf_counter()
                if progress:
                    progress(len(batch))
                if _cancelled(session, job_id):
                    self._cleanup(job_id, confined=context.confine)
                    break
                if (stop is not None and stop.is_set()) or (until is not None and time.monotonic() > until):
                    break
            else:
                begin_write(session)
                hold_lease(session, job_id, worker)
                job = get_job(session, job_id)
                if job.state == "running":
                    job.state, job.finished_at = "done", utcnow()
                    session.commit()
                self._cleanup(job_id, confined=context.confine)  # every item is acknowledged
        self.keeper.flush()
        return self.jobs.report(job_id)

    def _count(self, outcomes: list[str]) -> None:
        for outcome in outcomes:
            self.metrics.job_items.labels(outcome).inc()

    def _cleanup(self, job_id: str, confined: bool) -> None:
        """An uploaded job's files, once it ends: its images are in the media store by then."""
        if confined:
            remove_job_files(self.settings.jobs_dir, job_id)

    def _read_batches(
        self, session: Session, context: JobContext, batches: list[list[int]]
    ) -> Iterator[list[ReadItem]]:
        """Yield read batches in order, each read in parallel on the pool.

        With cores to spare beyond the model's threads, the next batch is read while the model runs. Without
        (2 cores, 2 torch threads), overlapping only makes readers preempt the model's OpenMP threads, which
        then stall each other at every barrier; reading between forward passes measured faster there.
        """
        read_ahead = self.settings.read_ahead
        # the pool's size and its threads' names change speed and debugging, never what is stored
        workers = self.settings.read_workers  # pragma: no mutate
        with ThreadPoolExecutor(workers, thread_name_prefix="ingest-read") as pool:  # pragma: no mutate

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
                data = self.fetcher.fetch(row.image)
            elif "://" in row.image:
                raise ValueError(f"unsupported URL scheme in {row.image!r}; use http(s) or a relative path")
            else:
                data = read_local(row.image, context.base_dir, self.decoder.max_bytes, context.confine)
            item.digest = content_hash(data)
            if (row.product_id, item.digest) not in context.known:
                item.loaded = self.decoder.decode(data)
                item.pixels = self.preprocess(item.loaded.image)
                self.media.save(item.digest, item.loaded.image)  # here, not in the serial write stage
                if self.on_stored is not None:
                    self.on_stored(item.digest)  # its local features, on this read thread, beside the model
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


def _cancelled(session: Session, job_id: str) -> bool:
    return session.scalar(select(IngestJob.state).where(IngestJob.id == job_id)) == "cancelled"


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
