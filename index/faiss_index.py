"""FAISS backend, persisted in a directory.

Layout: `faiss-<generation>.index` files and `meta.json`, which names the current file and the embedder.
A save writes a new generation, fsyncs it, then atomically replaces meta.json; so a crash at any point
leaves a complete, self-consistent index on disk. Older generations are deleted after the switch.
"""

import json
import logging
import os
import tempfile
import threading
from pathlib import Path

import faiss
import numpy as np

from index.base import IndexMismatchError, VectorIndex
from index.rwlock import ReadWriteLock

log = logging.getLogger(__name__)

META = "meta.json"
FORMAT = 1
SUPPORTED_TYPES = ("flat",)


class FaissIndex(VectorIndex):
    def __init__(self, directory: Path, embedder: str, dim: int, index_type: str = "flat") -> None:
        if index_type not in SUPPORTED_TYPES:
            raise ValueError(f"index type {index_type!r} is not supported (choose from {SUPPORTED_TYPES})")
        self.directory = directory
        self.embedder = embedder
        self.dim = dim
        self.index_type = index_type
        self._lock = ReadWriteLock()
        self._save_lock = threading.Lock()  # one save at a time; searches go on during it
        # Continue numbering after whatever is on disk, so a save never overwrites the live file.
        self._generation = _latest_generation(directory)
        self._dirty = False
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @classmethod
    def open(cls, directory: Path, embedder: str, dim: int, index_type: str = "flat") -> "FaissIndex":
        """Open the index stored in `directory`, or start an empty one there."""
        directory.mkdir(parents=True, exist_ok=True)
        meta_path = directory / META
        if not meta_path.exists():
            return cls(directory, embedder, dim, index_type)
        meta = json.loads(meta_path.read_text())
        if meta["embedder"] != embedder or meta["dim"] != dim:
            raise IndexMismatchError(
                f"the index in {directory} was built with {meta['embedder']} (dim {meta['dim']}), "
                f"but the configured model is {embedder} (dim {dim}). "
                "Run `sourcelens reindex` to rebuild it with the configured model, or set SOURCELENS_MODEL back."
            )
        index = cls(directory, embedder, dim, meta.get("type", "flat"))
        try:
            index._index = faiss.read_index(str(directory / meta["file"]))
        except RuntimeError as exc:  # missing or damaged file: the database holds every vector
            log.warning(
                "index file %s is unreadable (%s); starting empty, to be rebuilt from the database",
                meta["file"],
                str(exc).splitlines()[0][:200],
            )
            index._dirty = True
        return index

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(ids):
            raise ValueError(f"expected ({len(ids)}, {self.dim}) vectors, got {vectors.shape}")
        if len(ids) == 0:
            return
        with self._lock.write():
            self._index.remove_ids(faiss.IDSelectorBatch(ids))
            self._index.add_with_ids(vectors, ids)
            self._dirty = True

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return 0
        with self._lock.write():
            removed = int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
            self._dirty = self._dirty or removed > 0
        return removed

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock.read():
            if self._index.ntotal == 0:
                return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
            return self._index.search(queries, min(k, self._index.ntotal))

    def ids(self) -> np.ndarray:
        with self._lock.read():
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def dirty(self) -> bool:
        return self._dirty

    def save(self) -> None:
        # A read lock keeps writers out while the snapshot is written; searches go on.
        with self._save_lock, self._lock.read():
            generation = self._generation + 1
            filename = f"faiss-{generation:06d}.index"
            faiss.write_index(self._index, str(self.directory / filename))
            _fsync_file(self.directory / filename)
            meta = {
                "format": FORMAT,
                "backend": "faiss",
                "type": self.index_type,
                "embedder": self.embedder,
                "dim": self.dim,
                "count": int(self._index.ntotal),
                "generation": generation,
                "file": filename,
            }
            _atomic_write_json(self.directory / META, meta)
            self._generation = generation
            self._dirty = False
            self._remove_old_generations(keep=filename)

    def _remove_old_generations(self, keep: str) -> None:
        for path in self.directory.glob("faiss-*.index"):
            if path.name != keep:
                path.unlink(missing_ok=True)


def _latest_generation(directory: Path) -> int:
    numbers = [int(path.stem.split("-")[1]) for path in directory.glob("faiss-*.index") if path.stem[6:].isdigit()]
    return max(numbers, default=0)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".meta-", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
