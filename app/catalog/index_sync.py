"""Keep the vector index in step with the database, which is the source of truth.

Vectors are written to the database first and to the index after the commit, and the index is saved
lazily; so after a crash the index may lack recent images or hold deleted ones. `reconcile` repairs both
from the stored embeddings at start-up, and says what it did.
"""

import logging
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.catalog.models import Factory, Image, Product
from app.core.errors import InvalidInputError
from index import IndexMismatchError, VectorFields, VectorIndex

log = logging.getLogger(__name__)

CHUNK = 4096


@dataclass(frozen=True)
class SyncReport:
    added: int
    removed: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def check_catalogue_embedder(session: Session, embedder: str) -> None:
    """Refuse to serve a catalogue whose stored embeddings came from another model."""
    rows = session.execute(
        select(Image.embedder, func.count()).where(Image.embedder != embedder).group_by(Image.embedder)
    ).all()
    if rows:
        found = ", ".join(f"{count} by {name}" for name, count in rows)
        raise IndexMismatchError(
            f"catalogue images were embedded with another model ({found}); the configured model is "
            f"{embedder}. Run `sourcelens reindex` to re-embed them, or set SOURCELENS_MODEL back."
        )


def stored_embedder(session: Session) -> tuple[str, int]:
    """The model that embedded the catalogue and its vectors' dimension (from one stored embedding)."""
    row = session.execute(select(Image.embedder, Image.embedding).limit(1)).first()
    if row is None:
        raise InvalidInputError("the catalogue has no images yet: there is nothing to move")
    return row.embedder, len(vector_from_bytes(row.embedding))


def reconcile(session: Session, index: VectorIndex) -> SyncReport:
    db_ids = set(session.scalars(select(Image.id)))
    index_ids = set(index.ids().tolist())
    missing = sorted(db_ids - index_ids)
    extra = np.array(sorted(index_ids - db_ids), dtype=np.int64)
    for start in range(0, len(missing), CHUNK):
        upsert_from_db(session, index, missing[start : start + CHUNK])
    removed = index.remove(extra)
    report = SyncReport(added=len(missing), removed=removed)
    if report.changed:
        log.warning("index repaired from the database: %d vectors added, %d stale removed", report.added, removed)
    return report


def upsert_from_db(session: Session, index: VectorIndex, image_ids: list[int]) -> None:
    """Write these images' stored vectors (and, for a store that filters by itself, their catalogue fields)."""
    rows = session.execute(select(Image.id, Image.embedding).where(Image.id.in_(image_ids))).all()
    if rows:
        ids = np.array([row.id for row in rows], dtype=np.int64)
        vectors = np.stack([vector_from_bytes(row.embedding) for row in rows])
        index.upsert(ids, vectors, fields_for(session, index, ids))


def fields_for(session: Session, index: VectorIndex, image_ids: np.ndarray) -> list[VectorFields] | None:
    """The catalogue fields of each image, in order, for a store that filters by itself (None for FAISS)."""
    if not index.filters_inside:
        return None
    query = (
        select(Image.id, Product.factory_id, Factory.region, Product.category, Product.price, Product.moq)
        .join(Product, Image.product_id == Product.id)
        .join(Factory, Product.factory_id == Factory.id)
        .where(Image.id.in_([int(i) for i in image_ids]))
    )
    found = {row.id: VectorFields(*row[1:]) for row in session.execute(query)}
    # An image deleted meanwhile keeps a placeholder: written, then dropped by every search's database check.
    return [found.get(int(i), VectorFields(factory_id="")) for i in image_ids]


def drop_if_deleted(session: Session, index: VectorIndex, image_ids: np.ndarray) -> None:
    """Call after writing vectors that were committed before: an image deleted between its commit and the
    index write (its delete found nothing in the index to remove) is removed now, so the index never keeps it."""
    wanted = [int(i) for i in image_ids]
    present = set(session.scalars(select(Image.id).where(Image.id.in_(wanted))))
    if gone := [i for i in wanted if i not in present]:
        index.remove(np.array(gone, dtype=np.int64))


def refresh_fields(session: Session, index: VectorIndex, image_ids: list[int]) -> None:
    """After a product's or factory's filter values changed: rewrite its images' fields in a store that keeps
    them (vectors included, from the database)."""
    if index.filters_inside:
        for start in range(0, len(image_ids), CHUNK):
            upsert_from_db(session, index, image_ids[start : start + CHUNK])


def vector_from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


def vector_to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def load_vectors(session: Session, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Every stored (id, embedding), read in chunks into one preallocated array."""
    ids = np.array(sorted(session.scalars(select(Image.id))), dtype=np.int64)
    vectors = np.empty((len(ids), dim), dtype=np.float32)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        query = select(Image.id, Image.embedding).where(Image.id.in_(chunk.tolist()))
        rows = dict(session.execute(query).tuples().all())
        vectors[start : start + len(chunk)] = [vector_from_bytes(rows[int(i)]) for i in chunk]
    return ids, vectors
