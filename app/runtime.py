"""Everything a running SourceLens holds: settings, database, model and index, created once."""

import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.cores import usable_cores
from app.db import create_tables, make_engine, make_session_factory
from app.services.index_sync import check_catalogue_embedder, load_vectors, reconcile
from app.services.media import MediaStore
from app.services.scoring import default_near_duplicate
from app.services.verify import FeatureCache, one_thread_per_pair
from embeddings import Embedder, LoadedImage, load_embedder, load_image
from embeddings.batcher import MicroBatcher
from index import VectorIndex, open_index

log = logging.getLogger(__name__)


# Python hands the GIL over every 5 ms by default. An eager model forward issues hundreds of small ops from
# one thread, each needing the GIL back from decode threads; a 0.5 ms interval cut that convoy from a 30%
# slowdown of the model to 2% (measured on ViT-B-32 bf16 with two reader threads, 2 cores).
GIL_SWITCH_INTERVAL_S = 0.0005


def configure_threads(settings: Settings) -> None:
    torch.set_num_threads(settings.torch_threads or usable_cores())
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    embedder: Embedder
    index: VectorIndex
    media: MediaStore
    batcher: MicroBatcher
    features: FeatureCache = field(init=False)  # catalogue images' local features, for verification
    verification_pool: ThreadPoolExecutor = field(init=False)  # local-feature work, one thread per core
    _rebuild: threading.Thread | None = field(default=None, repr=False)

    @classmethod
    def start(cls, settings: Settings, embedder: Embedder | None = None) -> "Runtime":
        """Open the database, load the model, open the index and repair it against the database."""
        settings.ensure_dirs()
        configure_threads(settings)
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
            index = open_index(
                settings.index_dir,
                embedder.name,
                embedder.dim,
                settings.index,
                settings.index_ivf_threshold,
                settings.faiss_threads,
            )
            if reconcile(session, index).changed:
                index.save()
        exclusive = usable_cores() <= torch.get_num_threads()  # the model's threads hold every core
        batcher = MicroBatcher(embedder, settings.search_batch_max, settings.search_batch_wait_ms / 1000, exclusive)
        runtime = cls(settings, engine, sessions, embedder, index, MediaStore(settings.media_dir), batcher)
        runtime.maybe_rebuild_index()
        return runtime

    def __post_init__(self) -> None:
        self.features = FeatureCache(self.media.open)
        self.verification_pool = ThreadPoolExecutor(
            usable_cores(), thread_name_prefix="verify", initializer=one_thread_per_pair
        )

    @property
    def near_duplicate_similarity(self) -> float:
        configured = self.settings.near_duplicate_similarity
        return default_near_duplicate(self.embedder.name) if configured is None else configured

    @property
    def decode_side(self) -> int:
        """Images are decoded and kept at about this size: a little above the model's input, no more."""
        return max(self.settings.decode_side, self.embedder.preprocess.size)

    def load_image(self, data: bytes, max_bytes: int | None = None) -> LoadedImage:
        """Decode untrusted bytes under the configured limits, as every path that embeds must."""
        settings = self.settings
        return load_image(
            data,
            max_bytes=max_bytes or settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            max_side=self.decode_side,
        )

    def preload_index(self) -> None:
        """For a server: read a memory-mapped index into memory in the background (faster searches). Short
        commands (ingest, evaluate) skip it: they would read hundreds of MB for nothing."""
        if self.settings.index_preload:
            threading.Thread(target=self.index.preload, name="index-preload", daemon=True).start()

    def flush(self) -> None:
        if self.index.dirty:
            self.index.save()
        self.maybe_rebuild_index()

    def maybe_rebuild_index(self) -> None:
        """Start the background move to a bigger index kind when the catalogue has grown into it."""
        if self.index.wants_rebuild and not (self._rebuild and self._rebuild.is_alive()):
            self._rebuild = threading.Thread(target=self._rebuild_index, name="index-rebuild", daemon=True)
            self._rebuild.start()

    def _rebuild_index(self) -> None:
        try:
            self.index.begin_rebuild()  # log writes from here on; the snapshot below may miss them
            with self.sessions() as session:
                ids, vectors = load_vectors(session, self.embedder.dim)
            self.index.finish_rebuild(ids, vectors)
            self.index.save()
        except Exception:  # the flat index keeps serving; the next flush tries again
            log.exception("background index rebuild failed")

    def close(self) -> None:
        self.batcher.close()
        self.verification_pool.shutdown()
        self.flush()
        self.engine.dispose()
