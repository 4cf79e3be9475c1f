"""Vector indexes behind one interface (base.py): FAISS today. Imports nothing from app or embeddings."""

from pathlib import Path

from index.base import IndexMismatchError, VectorIndex
from index.faiss_index import IVF_THRESHOLD, FaissIndex


def open_index(
    directory: Path,
    embedder: str,
    dim: int,
    index_type: str = "auto",
    ivf_threshold: int = IVF_THRESHOLD,
    search_threads: int = 0,
) -> VectorIndex:
    return FaissIndex.open(directory, embedder, dim, index_type, ivf_threshold, search_threads)


__all__ = ["FaissIndex", "IndexMismatchError", "VectorIndex", "open_index"]
