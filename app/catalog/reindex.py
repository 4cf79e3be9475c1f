"""Re-embed the whole catalogue with the configured model and rebuild the index.

Works from the media store's copies, so the factories' original files are not needed. Resumable: rows
already embedded by the configured model are skipped, and each chunk is committed as it is done.
"""

import logging
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.catalog.index_sync import load_vectors, vector_to_bytes
from app.catalog.media import MediaStore
from app.catalog.models import Image
from embeddings import Embedder
from index import FP16_THRESHOLD, FaissIndex

log = logging.getLogger(__name__)
CHUNK = 64


def reembed(
    sessions: sessionmaker[Session],
    embedder: Embedder,
    media: MediaStore,
    progress: Callable[[int], None] | None = None,
    force: bool = False,
) -> int:
    """Re-embed images not yet embedded by `embedder` (all of them with force); returns how many."""
    done = 0
    with sessions() as session:
        query = select(Image.id).order_by(Image.id)
        if not force:
            query = query.where(Image.embedder != embedder.name)
        ids = list(session.scalars(query))
        for start in range(0, len(ids), CHUNK):
            images = list(session.scalars(select(Image).where(Image.id.in_(ids[start : start + CHUNK]))))
            vectors = embedder.embed_images([media.open(image.content_hash) for image in images])
            for image, vector in zip(images, vectors, strict=True):
                image.embedding, image.embedder = vector_to_bytes(vector), embedder.name
            session.commit()
            done += len(images)
            if progress:
                progress(len(images))
    return done


def rebuild_index(
    sessions: sessionmaker[Session],
    embedder: Embedder,
    directory: Path,
    index_type: str,
    ivf_threshold: int,
    fp16_threshold: int = FP16_THRESHOLD,
) -> FaissIndex:
    """A new index of the configured kind from the stored embeddings, saved over the old one atomically."""
    with sessions() as session:
        ids, vectors = load_vectors(session, embedder.dim)
    index = FaissIndex.build(
        directory, embedder.name, embedder.dim, index_type, ids, vectors, ivf_threshold, fp16_threshold
    )
    index.save()
    log.info("index rebuilt: %s, %d vectors", index.describe(), len(index))
    return index


def count_images(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Image)) or 0
