"""Keeping the vector index equal to the database over time: opened and repaired at start, saved after
changes, moved to a bigger kind in the background when the catalogue has grown into it, and (for a server)
read from its memory mapping into memory."""

import logging
import threading
import time
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.catalog.index_sync import check_catalogue_embedder, load_vectors, reconcile
from index import FP16_THRESHOLD, VectorIndex, open_index

log = logging.getLogger(__name__)


class IndexKeeper:
    def __init__(self, index: VectorIndex, sessions: sessionmaker[Session], dim: int) -> None:
        self.index = index
        self.sessions = sessions
        self.dim = dim
        self.last_rebuild_s: float | None = None  # how long the last background rebuild took
        self.saves = True  # False: the index lives in this process's memory only (a worker beside a server)
        self._rebuild: threading.Thread | None = None

    @classmethod
    def open(
        cls,
        sessions: sessionmaker[Session],
        directory: Path,
        model_name: str,
        dim: int,
        *,
        kind: str,
        ivf_threshold: int,
        faiss_threads: int,
        store: str = "faiss",
        saves: bool = True,
        milvus_ef: tuple[int, int] = (128, 4096),
        fp16_threshold: int = FP16_THRESHOLD,
    ) -> "IndexKeeper":
        """Open the index in `directory` and repair it against the database (the source of truth). Refuses a
        catalogue embedded by another model."""
        with sessions() as session:
            check_catalogue_embedder(session, model_name)
            index = open_index(
                directory, model_name, dim, kind, ivf_threshold, faiss_threads, store, milvus_ef, fp16_threshold
            )
            if reconcile(session, index).changed and saves:
                index.save()
        keeper = cls(index, sessions, dim)
        keeper.saves = saves
        keeper.maybe_rebuild()
        return keeper

    def preload_in_background(self) -> None:
        """For a server: read a memory-mapped index into memory (faster searches). Short commands (ingest,
        evaluate) skip it: they would read hundreds of MB for nothing."""
        threading.Thread(target=self.index.preload, name="index-preload", daemon=True).start()

    def flush(self) -> None:
        self.save()
        self.maybe_rebuild()

    def save(self) -> None:
        """Write the index to disk if it changed since it was last written."""
        if self.saves and self.index.dirty:
            self.index.save()

    def maybe_rebuild(self) -> None:
        """Start the background move to a bigger index kind when the catalogue has grown into it."""
        if self.index.wants_rebuild and not self.rebuilding:
            self._rebuild = threading.Thread(target=self._rebuild_index, name="index-rebuild", daemon=True)
            self._rebuild.start()

    @property
    def rebuilding(self) -> bool:
        return self._rebuild is not None and self._rebuild.is_alive()

    def wait_for_rebuild(self, timeout: float | None = None) -> None:
        if self._rebuild is not None:
            self._rebuild.join(timeout)

    def _rebuild_index(self) -> None:
        try:
            started = time.perf_counter()
            self.index.begin_rebuild()  # log writes from here on; the snapshot below may miss them
            with self.sessions() as session:
                ids, vectors = load_vectors(session, self.dim)
            self.index.finish_rebuild(ids, vectors)
            if self.saves:
                self.index.save()
            self.last_rebuild_s = time.perf_counter() - started
        except Exception:  # the flat index keeps serving; the next flush tries again
            log.exception("background index rebuild failed")

    def close(self) -> None:
        """Save what changed. A rebuild in progress is left to finish or die with the process: the saved flat
        index serves, and the next start rebuilds."""
        self.save()
        self.index.close()
