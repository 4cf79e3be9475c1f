"""Catalogue ingestion as three stages: read (fetch, hash, decode, preprocess) → embed → write.

Reading runs on a thread pool one batch ahead of the model, so decoding overlaps inference. Known
bytes (same product, same content hash) are recognised before decoding and cost no model time, which
makes a re-run of the same manifest cheap and a no-op. Each write batch is one transaction; its vectors
go to the index after the commit.
"""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Factory, Image, Product
from app.runtime import Runtime
from app.services.catalog import content_hash, new_image_row
from app.services.fetch import fetch_url, read_local
from app.services.manifest import ManifestRow, RowError, read_manifest
from embeddings import ImageError, LoadedImage, load_image

Progress = Callable[[int], None]


@dataclass
class IngestReport:
    total: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "embed": 0.0, "write": 0.0})
    elapsed_s: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.added / self.elapsed_s if self.elapsed_s else 0.0

    def fail(self, error: RowError) -> None:
        self.failed += 1
        self.errors.append(error)

    def summary(self) -> str:
        stages = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.stage_seconds.items())
        return (
            f"{self.total} rows: {self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.failed} failed in {self.elapsed_s:.1f}s ({self.images_per_s:.1f} images/s; {stages})"
        )


@dataclass
class ReadItem:
    row: ManifestRow
    digest: str = ""
    loaded: LoadedImage | None = None  # None when the bytes are already known for this product
    pixels: np.ndarray | None = None
    error: str = ""
    seconds: float = 0.0


@dataclass
class IngestSource:
    """Where a manifest's relative image paths live, and whether paths may leave that folder."""

    base_dir: Path
    confine: bool = False


def ingest_manifest(
    rt: Runtime, manifest: Path, progress: Progress | None = None, confine: bool = False
) -> IngestReport:
    rows = read_manifest(manifest)
    return ingest_rows(rt, rows, IngestSource(manifest.parent, confine), progress)


def ingest_rows(
    rt: Runtime, rows: list[ManifestRow | RowError], source: IngestSource, progress: Progress | None = None
) -> IngestReport:
    started = time.perf_counter()
    report = IngestReport(total=len(rows))
    good = [row for row in rows if isinstance(row, ManifestRow)]
    for error in (row for row in rows if isinstance(row, RowError)):
        report.fail(error)
    if progress and report.failed:
        progress(report.failed)
    with rt.sessions() as session:
        known = _known_images(session, {row.product_id for row in good})
        for batch in _read_ahead(rt, good, source, known, rt.settings.embed_batch_size, report):
            _embed(rt, batch, report)
            _write(session, rt, batch, known, report)
            if progress:
                progress(len(batch))
    rt.flush()
    report.elapsed_s = time.perf_counter() - started
    return report


def _known_images(session: Session, product_ids: set[str]) -> set[tuple[str, str]]:
    known: set[tuple[str, str]] = set()
    ids = sorted(product_ids)
    for start in range(0, len(ids), 500):
        query = select(Image.product_id, Image.content_hash).where(Image.product_id.in_(ids[start : start + 500]))
        known.update(session.execute(query).tuples())
    return known


def _read_ahead(
    rt: Runtime,
    rows: list[ManifestRow],
    source: IngestSource,
    known: set[tuple[str, str]],
    size: int,
    report: IngestReport,
) -> Iterator[list[ReadItem]]:
    """Yield read batches in order while the next batch is already being read on the pool."""
    batches = [rows[i : i + size] for i in range(0, len(rows), size)]
    with ThreadPoolExecutor(max_workers=rt.settings.read_workers, thread_name_prefix="ingest-read") as pool:
        pending: list[Future[ReadItem]] = []
        for index in range(len(batches) + 1):
            next_rows = batches[index] if index < len(batches) else []
            upcoming = [pool.submit(_read, rt, row, source, known) for row in next_rows]
            if pending:
                items = [future.result() for future in pending]
                report.stage_seconds["read"] += sum(item.seconds for item in items)
                yield items
            pending = upcoming


def _read(rt: Runtime, row: ManifestRow, source: IngestSource, known: set[tuple[str, str]]) -> ReadItem:
    started = time.perf_counter()
    item = ReadItem(row)
    settings = rt.settings
    try:
        if row.image.startswith(("http://", "https://")):
            data = fetch_url(row.image, settings)
        elif "://" in row.image:
            raise ValueError(f"unsupported URL scheme in {row.image!r}; use http(s) or a relative path")
        else:
            data = read_local(row.image, source.base_dir, settings.max_image_bytes, source.confine)
        item.digest = content_hash(data)
        if (row.product_id, item.digest) not in known:
            item.loaded = load_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
            item.pixels = rt.embedder.preprocess(item.loaded.image)
    except (ImageError, ValueError, OSError) as exc:
        item.error = str(exc)
    item.seconds = time.perf_counter() - started
    return item


def _embed(rt: Runtime, batch: list[ReadItem], report: IngestReport) -> None:
    started = time.perf_counter()
    todo = [item for item in batch if item.pixels is not None]
    if todo:
        vectors = rt.embedder.embed_pixels(np.stack([item.pixels for item in todo]))
        for item, vector in zip(todo, vectors, strict=True):
            item.pixels = vector  # the batch's pixels are no longer needed; keep the vector in their place
    report.stage_seconds["embed"] += time.perf_counter() - started


def _write(
    session: Session, rt: Runtime, batch: list[ReadItem], known: set[tuple[str, str]], report: IngestReport
) -> None:
    started = time.perf_counter()
    new_rows: list[tuple[Image, np.ndarray]] = []
    for item in batch:
        row = item.row
        if item.error:
            report.fail(RowError(row.line, row.image, item.error))
            continue
        conflict, changed = _upsert_owner(session, row)
        if conflict:
            report.fail(RowError(row.line, row.image, conflict))
            continue
        key = (row.product_id, item.digest)
        if key in known or item.loaded is None:
            report.updated += bool(changed)
            report.unchanged += not changed
            continue
        known.add(key)
        image = new_image_row(rt, row.product_id, item.digest, row.image, item.loaded, item.pixels)
        session.add(image)
        new_rows.append((image, item.pixels))
        report.added += 1
    session.commit()
    if new_rows:
        rt.index.upsert(np.array([image.id for image, _ in new_rows]), np.stack([vector for _, vector in new_rows]))
    report.stage_seconds["write"] += time.perf_counter() - started


def _upsert_owner(session: Session, row: ManifestRow) -> tuple[str, bool]:
    """Create or update the row's factory and product: (reason the row conflicts, or "", changed)."""
    product = session.get(Product, row.product_id)
    if product is not None and product.factory_id != row.factory_id:
        return f"product {row.product_id!r} belongs to factory {product.factory_id!r}, not {row.factory_id!r}", False
    changed = False
    factory = session.get(Factory, row.factory_id)
    if factory is None:
        session.add(
            Factory(
                id=row.factory_id, name=row.factory_name or row.factory_id, region=row.region or None, attributes={}
            )
        )
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
    changed |= _set_if_given(
        product,
        title=row.title,
        category=row.category,
        price=row.price,
        moq=row.moq,
        attributes={**product.attributes, **row.attributes},
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
