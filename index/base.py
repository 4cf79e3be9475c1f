"""The vector index interface. Backends: FAISS (here); Milvus later, behind the same calls."""

from abc import ABC, abstractmethod

import numpy as np


class IndexMismatchError(RuntimeError):
    """The stored index was built by another embedder; searching it would return nonsense."""


class VectorIndex(ABC):
    """Unit vectors keyed by int64 image ids; inner product = cosine similarity. Thread-safe."""

    embedder: str
    dim: int

    @abstractmethod
    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors, replacing any already stored under the same ids."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ids (absent ones are ignored); returns how many were removed."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (len(queries), k), best first; missing slots have id -1. With `allowed`,
        only those ids are candidates (filtered search, exact however few pass the filter)."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Every stored id."""

    @property
    @abstractmethod
    def dirty(self) -> bool:
        """True when the index holds changes not yet saved."""

    @abstractmethod
    def save(self) -> None:
        """Persist atomically: after a crash the previous or the new state is on disk, never a mix."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def describe(self) -> str:
        """The index's kind and parameters, for people."""

    def preload(self) -> bool:
        """Bring a lazily opened index fully into memory (may take seconds; searches go on). Returns whether
        it changed anything."""
        return False

    # Backends that change structure as they grow (FAISS: flat → IVF) rebuild in the background.
    @property
    def wants_rebuild(self) -> bool:
        return False

    def begin_rebuild(self) -> None:
        raise NotImplementedError

    def finish_rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        raise NotImplementedError
