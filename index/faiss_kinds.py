"""The FAISS index kinds SourceLens uses, and the few operations that differ between them.

- flat: exact inner product. Best below ~50k vectors, where a scan is already a few milliseconds.
- ivf-sq8: inverted file with 8-bit scalar quantisation, 1 byte per dimension (512 MB per million
  512-d vectors) and a hashtable direct map for O(1) removal. Above ~50k vectors; nprobe trades recall
  for time (scripts/bench_index.py measures it).

IVF-SQ8 rather than HNSW: HNSW cannot remove vectors, and catalogue images are deleted and replaced.
"""

import math

import faiss
import numpy as np

FLAT = "flat"
IVF_SQ8 = "ivf-sq8"
KINDS = (FLAT, IVF_SQ8)
TRAINING_POINTS_PER_LIST = 40  # FAISS warns below 39


def new_flat(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def nlist_for(count: int) -> int:
    """A power of two near 2·sqrt(count): 2048 lists for a million vectors."""
    return max(16, 2 ** round(math.log2(max(2 * math.sqrt(max(count, 1)), 1))))


def default_nprobe(nlist: int) -> int:
    # A sixteenth of the lists: on a million catalogue-like 512-d vectors (2048 lists) that is recall@10
    # 0.96 at ~3 ms a query; nlist // 64 gave 0.91 (scripts/bench_index.py).
    return max(8, nlist // 16)


def train_ivf_sq8(vectors: np.ndarray, dim: int, count: int, seed: int = 0) -> faiss.IndexIVFScalarQuantizer:
    """An empty, trained IVF-SQ8 index for about `count` vectors, trained on a sample of `vectors`."""
    nlist = nlist_for(count)
    rng = np.random.default_rng(seed)
    sample_size = min(len(vectors), nlist * TRAINING_POINTS_PER_LIST)
    sample = vectors[np.sort(rng.choice(len(vectors), sample_size, replace=False))]
    index = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.seed = seed
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    index.nprobe = default_nprobe(nlist)
    return tune_for_single_queries(index)


def filter_params(index: faiss.Index, allowed: np.ndarray) -> faiss.SearchParameters:
    """Search parameters that admit only `allowed` ids. IVF probes more lists the fewer ids pass, so that
    about as many admitted vectors are scanned as an unfiltered search scans (all lists at 1/nprobe-th)."""
    selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
    if kind_of(index) == IVF_SQ8:
        widened = math.ceil(index.nprobe * index.ntotal / max(len(allowed), 1))
        params = faiss.SearchParametersIVF(sel=selector, nprobe=min(index.nlist, max(index.nprobe, widened)))
    else:
        params = faiss.SearchParameters(sel=selector)
    params.selector_ref = selector  # the parameters hold a raw pointer: keep the selector alive with them
    return params


def tune_for_single_queries(index: faiss.Index) -> faiss.Index:
    """Searches come one photo at a time: split each query's probes across threads, not queries across
    threads (1M × 512, nprobe 128, 2 threads: 4.0 → 2.3 ms a query). Not stored in the file; set on load."""
    if kind_of(index) == IVF_SQ8:
        index.parallel_mode = 1
    return index


def kind_of(index: faiss.Index) -> str:
    return IVF_SQ8 if isinstance(index, faiss.IndexIVF) else FLAT


def remove(index: faiss.Index, ids: np.ndarray) -> int:
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if kind_of(index) == IVF_SQ8:  # the hashtable direct map accepts only an explicit array
        return int(index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))
    return int(index.remove_ids(faiss.IDSelectorBatch(ids)))


def stored_ids(index: faiss.Index) -> np.ndarray:
    if kind_of(index) == FLAT:
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    lists = index.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy() for i in range(index.nlist)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def describe(index: faiss.Index) -> str:
    if kind_of(index) == FLAT:
        return "flat (exact)"
    return f"ivf-sq8 ({index.nlist} lists, nprobe {index.nprobe})"
