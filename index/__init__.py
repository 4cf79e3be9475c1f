"""Vector index backends behind one interface."""

from pathlib import Path

from index.base import IndexMismatchError, VectorIndex
from index.faiss_index import FaissIndex


def open_index(directory: Path, embedder: str, dim: int, index_type: str = "flat") -> VectorIndex:
    return FaissIndex.open(directory, embedder, dim, index_type)


__all__ = ["FaissIndex", "IndexMismatchError", "VectorIndex", "open_index"]
