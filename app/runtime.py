"""Everything a running SourceLens holds: settings, database, model and index, created once."""

import logging
import os
from dataclasses import dataclass

import torch
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import create_tables, make_engine, make_session_factory
from app.services.index_sync import check_catalogue_embedder, reconcile
from app.services.media import MediaStore
from embeddings import Embedder, load_embedder
from index import VectorIndex, open_index

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    embedder: Embedder
    index: VectorIndex
    media: MediaStore

    @classmethod
    def start(cls, settings: Settings, embedder: Embedder | None = None) -> "Runtime":
        """Open the database, load the model, open the index and repair it against the database."""
        settings.ensure_dirs()
        torch.set_num_threads(settings.torch_threads or os.cpu_count() or 1)
        engine = make_engine(settings.resolved_database_url)
        create_tables(engine)
        sessions = make_session_factory(engine)
        embedder = embedder or load_embedder(
            settings.resolved_model,
            precision=settings.precision,
            cache_dir=settings.model_cache_dir,
            batch_size=settings.embed_batch_size,
        )
        with sessions() as session:
            check_catalogue_embedder(session, embedder.name)
            index = open_index(settings.index_dir, embedder.name, embedder.dim, settings.index)
            if reconcile(session, index).changed:
                index.save()
        return cls(settings, engine, sessions, embedder, index, MediaStore(settings.media_dir))

    def flush(self) -> None:
        if getattr(self.index, "dirty", True):
            self.index.save()

    def close(self) -> None:
        self.flush()
        self.engine.dispose()
