"""Vector indexes behind one interface (base.py): FAISS in the process (the default) or Milvus shared by
several processes. Imports nothing from app or embeddings."""

from pathlib import Path

from index.base import IndexMismatchError, VectorFields, VectorFilter, VectorIndex
from index.faiss_index import FP16_THRESHOLD, IVF_THRESHOLD, FaissIndex

FAISS = "faiss"


def open_index(
    directory: Path,
    embedder: str,
    dim: int,
    index_type: str = "auto",
    ivf_threshold: int = IVF_THRESHOLD,
    search_threads: int = 0,
    store: str = FAISS,
    milvus_ef: tuple[int, int] = (128, 4096),
    fp16_threshold: int = FP16_THRESHOLD,
) -> VectorIndex:
    """`store`: "faiss" (an index in `directory`, in this process), `milvus://host:port`, or a Milvus Lite
    file path ending in .db; `milvus_ef`: Milvus's HNSW search breadth, unfiltered and filtered."""
    if store == FAISS:
        return FaissIndex.open(directory, embedder, dim, index_type, ivf_threshold, search_threads, fp16_threshold)
    from index.milvus_index import MilvusIndex  # pymilvus is an optional dependency (the milvus extra)

    return MilvusIndex(store, embedder, dim, ef=milvus_ef[0], filtered_ef=milvus_ef[1])


__all__ = [
    "FP16_THRESHOLD",
    "FaissIndex",
    "IndexMismatchError",
    "VectorFields",
    "VectorFilter",
    "VectorIndex",
    "open_index",
]
