"""The vector index interface. Backends: FAISS (in this process, the embedded default) and Milvus (a shared
store for several processes); the same calls on both."""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class IndexMismatchError(RuntimeError):
    """The stored index was built by another embedder; searching it would return nonsense."""


@dataclass(frozen=True)
class VectorFields:
    """The catalogue values stored beside a vector by a store that filters by itself (Milvus)."""

    factory_id: str
    region: str | None = None
    category: str | None = None
    price: float | None = None
    moq: int | None = None


@dataclass(frozen=True)
class VectorFilter:
    """What a search keeps, for a store that filters by itself; every set field must hold (None: any).
    `factory_ids` narrows to those factories (an empty tuple keeps nothing)."""

    region: str | None = None
    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    max_moq: int | None = None
    factory_ids: tuple[str, ...] | None = None


class VectorIndex(ABC):
    """Unit vectors keyed by int64 image ids; inner product = cosine similarity. Thread-safe."""

    embedder: str
    dim: int
    # True: the store keeps VectorFields and applies a VectorFilter inside its search (before the top k), so
    # upserts must carry the fields and catalogue changes must refresh them. False: the caller passes the ids a
    # filter allows instead.
    filters_inside: bool = False

    @abstractmethod
    def upsert(self, ids: np.ndarray, vectors: np.ndarray, fields: Sequence[VectorFields] | None = None) -> None:
        """Add vectors, replacing any already stored under the same ids (`fields`: one per id, for a store
        that filters by itself; others ignore them)."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ids (absent ones are ignored); returns how many were removed."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, where: VectorFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (len(queries), k), best first; missing slots have id -1. With `allowed`,
        only those ids are candidates (filtered search, exact however few pass the filter). `where` is
        applied only by a store with `filters_inside`."""

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

    def close(self) -> None:  # noqa: B027 (optional: only a remote store has something to release)
        """Release connections (a remote store); the index is not used afterwards."""

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
