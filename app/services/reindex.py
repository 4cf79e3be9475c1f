"""Re-embed the whole catalogue with the configured model and rebuild the index.

Works from the media store's copies, so the factories' original files are not needed. Resumable: rows
already embedded by the configured model are skipped, and each chunk is committed as it is done.
"""

import logging
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.models import Image
from app.services.index_sync import upsert_from_db, vector_to_bytes
from app.services.media import MediaStore
from embeddings import Embedder
from index import VectorIndex

log = logging.getLogger(__name__)
CHUNK = 64


def reindex(
    sessions: sessionmaker[Session],
    embedder: Embedder,
    media: MediaStore,
    fresh_index: VectorIndex,
    progress: Callable[[int], None] | None = None,
    force: bool = False,
) -> int:
    """Re-embed images not yet embedded by `embedder` (all of them with force); returns how many."""
    done = 0
    with sessions() as session:
        query = select(Image.id).order_by(Image.id)
        if not force:
            query = query.where(Image.embedder != embedder.name)
        for chunk in _chunks(list(session.scalars(query)), CHUNK):
            images = list(session.scalars(select(Image).where(Image.id.in_(chunk))))
            vectors = embedder.embed_images([media.open(image.content_hash) for image in images])
            for image, vector in zip(images, vectors, strict=True):
                image.embedding, image.embedder = vector_to_bytes(vector), embedder.name
            session.commit()
            done += len(images)
            if progress:
                progress(len(images))
        all_ids = list(session.scalars(select(Image.id)))
        for chunk in _chunks(all_ids, 4096):
            upsert_from_db(session, fresh_index, chunk)
    fresh_index.save()
    log.info("reindexed %d images; index holds %d vectors", done, len(fresh_index))
    return done


def count_images(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Image)) or 0


def _chunks(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


__all__ = ["count_images", "reindex"]
