"""FAISS backend, persisted in a directory.

Layout: `faiss-<generation>.index` files and `meta.json`, which names the current file, its SHA-256 and the
embedder. A save writes a new generation, fsyncs it, then atomically replaces meta.json; so a crash at any
point leaves a complete, self-consistent index on disk. Older generations are deleted after the switch.
A file that does not match its checksum, or a meta.json that cannot be read, is damage, not a reason to
refuse to start: the index starts empty and dirty, with one warning, and is rebuilt from the database.

Index kind (index/faiss_kinds.py) follows the `index_type` policy: `flat`, `flat-fp16`, `ivf-sq8`, or `auto`
(flat until `fp16_threshold` vectors, flat-fp16 until `ivf_threshold`, then IVF-SQ8). Moving on to the next
kind is a rebuild that runs in the background: mutations made meanwhile are logged and replayed onto the new
index before it replaces the old one, so searches and writes go on throughout. IVF files are opened
memory-mapped (fast start, pages shared with the OS cache) and copied into memory on the first write.
"""

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from index import faiss_kinds as kinds
from index.base import IndexMismatchError, VectorFields, VectorFilter, VectorIndex
from index.rwlock import ReadWriteLock

log = logging.getLogger(__name__)

META = "meta.json"
FORMAT = 1
AUTO = "auto"
POLICIES = (*kinds.KINDS, AUTO)
IVF_THRESHOLD = 50_000  # a flat scan of 50k × 512 takes ~9 ms on one core; past that, IVF pays
# Below this a flat scan takes a millisecond or two and stays exact; above it, 16-bit codes scan 2.5x faster.
FP16_THRESHOLD = 10_000


class FaissIndex(VectorIndex):
    def __init__(
        self,
        directory: Path,
        embedder: str,
        dim: int,
        index_type: str = AUTO,
        ivf_threshold: int = IVF_THRESHOLD,
        search_threads: int = 0,
        fp16_threshold: int = FP16_THRESHOLD,
    ) -> None:
        if index_type not in POLICIES:
            raise ValueError(f"index type {index_type!r} is not supported (choose from {', '.join(POLICIES)})")
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.embedder = embedder
        self.dim = dim
        self.policy = index_type
        self.ivf_threshold = ivf_threshold
        self.fp16_threshold = fp16_threshold
        self.search_threads = search_threads  # OpenMP threads per search; 0: FAISS's default, one per core
        self._lock = ReadWriteLock()
        self._save_lock = threading.Lock()  # one save at a time; searches go on during it
        # Continue numbering after whatever is on disk, so a save never overwrites the live file.
        self._generation = _latest_generation(directory)
        self._dirty = False
        self._opened_from: Path | None = None  # the file this index is unchanged from: a save has nothing to do
        self._memory_mapped = False  # its lists are mapped from that file: read-only until the first write
        self._log: list[tuple[str, np.ndarray, np.ndarray | None]] | None = None  # mutations during a rebuild
        self._index: faiss.Index = kinds.new_flat(dim)

    @classmethod
    def open(
        cls,
        directory: Path,
        embedder: str,
        dim: int,
        index_type: str = AUTO,
        ivf_threshold: int = IVF_THRESHOLD,
        search_threads: int = 0,
        fp16_threshold: int = FP16_THRESHOLD,
    ) -> "FaissIndex":
        """Open the index stored in `directory`, or start an empty one there."""
        index = cls(directory, embedder, dim, index_type, ivf_threshold, search_threads, fp16_threshold)
        meta_path = directory / META
        if not meta_path.exists():
            if _latest_generation(directory):  # index files without the meta that names one of them
                index._start_damaged(f"{META} is missing")
            return index
        try:
            meta = _read_meta(meta_path)
        except ValueError as exc:
            index._start_damaged(f"{META} is unreadable ({exc})")
            return index
        if meta["embedder"] != embedder or meta["dim"] != dim:
            raise IndexMismatchError(
                f"the index in {directory} was built with {meta['embedder']} (dim {meta['dim']}), "
                f"but the configured model is {embedder} (dim {dim}). "
                "Run `sourcelens reindex` to rebuild it with the configured model, or set SOURCELENS_MODEL back."
            )
        index._load(directory / meta["file"], meta.get("type", kinds.FLAT), meta.get("sha256"), meta.get("count"))
        return index

    @classmethod
    def build(
        cls,
        directory: Path,
        embedder: str,
        dim: int,
        index_type: str,
        ids: np.ndarray,
        vectors: np.ndarray,
        ivf_threshold: int = IVF_THRESHOLD,
        fp16_threshold: int = FP16_THRESHOLD,
    ) -> "FaissIndex":
        """A new index of the policy's kind for these vectors (trained if it needs training)."""
        index = cls(directory, embedder, dim, index_type, ivf_threshold, fp16_threshold=fp16_threshold)
        index._index = kinds.new_index(index._wanted(len(ids)), vectors, dim, len(ids))
        index.upsert(ids, vectors)
        return index

    def _load(self, path: Path, kind: str, sha256: str | None, count: int | None) -> None:
        # Reading the whole file for its checksum costs ~0.3 s per GB, paid once at start: a flipped byte in a
        # vector otherwise loads silently and scores garbage (similarities of 1e35 were seen).
        if sha256 is not None:
            try:
                actual = _sha256(path)
            except OSError as exc:
                self._start_damaged(f"index file {path.name} is unreadable ({exc.strerror})")
                return
            if actual != sha256:
                self._start_damaged(f"index file {path.name} does not match its checksum")
                return
        try:
            flags = faiss.IO_FLAG_MMAP if kind == kinds.IVF_SQ8 else 0
            loaded = kinds.tune_for_single_queries(faiss.read_index(str(path), flags))
        except RuntimeError as exc:
            self._start_damaged(f"index file {path.name} is unreadable ({str(exc).splitlines()[0][:200]})")
            return
        if count is not None and loaded.ntotal != count:
            self._start_damaged(f"index file {path.name} holds {loaded.ntotal} vectors, its meta says {count}")
            return
        self._index, self._opened_from, self._memory_mapped = loaded, path, bool(flags)

    def _start_damaged(self, reason: str) -> None:
        """Start empty and dirty: the database holds every vector, so the owner's reconcile rebuilds it."""
        log.warning("%s in %s; starting empty, to be rebuilt from the database", reason, self.directory)
        self._index = kinds.new_flat(self.dim)
        self._dirty = True

    def _wanted(self, count: int) -> str:
        """The kind the policy calls for at `count` vectors."""
        if self.policy != AUTO:
            return self.policy
        if count >= self.ivf_threshold:
            return kinds.IVF_SQ8
        return kinds.FLAT_FP16 if count >= self.fp16_threshold else kinds.FLAT

    # --- mutations -----------------------------------------------------------------------------------

    def upsert(self, ids: np.ndarray, vectors: np.ndarray, fields: Sequence[VectorFields] | None = None) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(ids):
            raise ValueError(f"expected ({len(ids)}, {self.dim}) vectors, got {vectors.shape}")
        if len(ids) == 0:
            return
        with self._lock.write():
            self._make_writable()
            _upsert(self._index, ids, vectors)
            self._record("upsert", ids, vectors)
            self._dirty = True

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return 0
        with self._lock.write():
            self._make_writable()
            removed = kinds.remove(self._index, ids)
            self._record("remove", ids, None)
            self._dirty = self._dirty or removed > 0
        return removed

    def _record(self, op: str, ids: np.ndarray, vectors: np.ndarray | None) -> None:
        if self._log is not None:
            self._log.append((op, ids.copy(), None if vectors is None else vectors.copy()))

    def _make_writable(self) -> None:
        if self._memory_mapped:  # memory-mapped lists are read-only: read an in-memory copy once
            self._index = kinds.tune_for_single_queries(faiss.read_index(str(self._opened_from)))
            self._memory_mapped = False
        self._opened_from = None

    def preload(self) -> bool:
        """Replace memory-mapped lists by an in-memory copy, read without holding the lock; False when there
        was nothing to do or a write got there first. A million-vector IVF-SQ8 search ran 1.5-2x faster on
        the copy than on the mapping (README "Benchmarks"): opening mapped gives a fast start, this the speed."""
        with self._lock.read():
            path = self._opened_from if self._memory_mapped else None
        if path is None:
            return False
        try:
            copy = kinds.tune_for_single_queries(faiss.read_index(str(path)))
        except RuntimeError:  # a save replaced the file meanwhile: the index is in memory already
            return False
        with self._lock.write():
            if not (self._memory_mapped and self._opened_from == path):
                return False
            self._index, self._memory_mapped = copy, False
        return True

    # --- reads ---------------------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, where: VectorFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self.search_threads:
            # OpenMP keeps the thread count per calling thread: a count set once at start-up reaches only the
            # thread that set it, not the server's worker threads, so each search sets it for its own thread.
            faiss.omp_set_num_threads(self.search_threads)
        with self._lock.read():
            if self._index.ntotal == 0 or (allowed is not None and len(allowed) == 0):
                return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
            params = None if allowed is None else kinds.filter_params(self._index, allowed)
            # IVF may find fewer than k in the lists it probes: those slots come back as id -1.
            return self._index.search(queries, min(k, self._index.ntotal), params=params)

    def ids(self) -> np.ndarray:
        with self._lock.read():
            return kinds.stored_ids(self._index)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        return kinds.kind_of(self._index)

    def describe(self) -> str:
        return kinds.describe(self._index) + (", memory-mapped" if self._memory_mapped else "")

    @property
    def dirty(self) -> bool:
        return self._dirty

    # --- background upgrade to the next kind ---------------------------------------------------------

    @property
    def wants_rebuild(self) -> bool:
        """The policy calls for a later kind than the index is (it grew, or the policy changed). Never back:
        a catalogue that shrinks keeps its kind until `sourcelens reindex`."""
        order = kinds.KINDS.index
        return order(self._wanted(len(self))) > order(self.kind) and self._log is None

    def begin_rebuild(self) -> None:
        """Start logging mutations; take the snapshot of vectors to build from *after* this call."""
        with self._lock.write():
            self._log = []

    def finish_rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Build the policy's kind from the snapshot (slow, no lock held), replay the log, swap it in."""
        try:
            new = kinds.new_index(self._wanted(len(ids)), vectors, self.dim, len(ids))
            _upsert(new, np.ascontiguousarray(ids, np.int64), np.ascontiguousarray(vectors, np.float32))
            with self._lock.write():
                for op, logged_ids, logged_vectors in self._log or []:
                    if op == "upsert" and logged_vectors is not None:
                        _upsert(new, logged_ids, logged_vectors)
                    else:
                        kinds.remove(new, logged_ids)
                self._index, self._opened_from, self._memory_mapped, self._dirty = new, None, False, True
                log.info("index rebuilt as %s with %d vectors", kinds.describe(new), new.ntotal)
        finally:
            self._log = None

    # --- persistence ---------------------------------------------------------------------------------

    def save(self) -> None:
        # A read lock keeps writers out while the snapshot is written; searches go on.
        with self._save_lock, self._lock.read():
            if self._opened_from:  # unchanged since it was opened: the file on disk is current
                return
            generation = self._generation + 1
            filename = f"faiss-{generation:06d}.index"
            faiss.write_index(self._index, str(self.directory / filename))
            _fsync_file(self.directory / filename)
            meta = {
                "sha256": _sha256(self.directory / filename),
                "format": FORMAT,
                "backend": "faiss",
                "type": self.kind,
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


def _upsert(index: faiss.Index, ids: np.ndarray, vectors: np.ndarray) -> None:
    kinds.remove(index, ids)
    index.add_with_ids(vectors, ids)


def _latest_generation(directory: Path) -> int:
    numbers = [int(path.stem[6:]) for path in directory.glob("faiss-*.index") if path.stem[6:].isdigit()]
    return max(numbers, default=0)


def _read_meta(path: Path) -> dict:
    """meta.json's contents; ValueError when it is truncated, not JSON, or lacks a field a load needs."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)[:200]) from exc
    missing = [key for key in ("embedder", "dim", "file") if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    if "/" in str(meta["file"]) or "\\" in str(meta["file"]):
        raise ValueError("its file is not in the index directory")
    return meta


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
