"""The FAISS index kinds SourceLens uses, and the few operations that differ between them.

- flat: exact inner product. Small catalogues, where a scan takes a millisecond or two.
- flat-fp16: every vector scanned, stored as 16-bit floats: scores within about 1e-4 of exact, and the scan,
  which is bound by memory rather than arithmetic, about 2.5 times faster (20,000 × 1280: 5.5 -> 2.1 ms;
  docs/benchmarks.md). From ~10k vectors to ~50k.
- ivf-sq8: inverted file with 8-bit scalar quantisation, 1 byte per dimension (512 MB per million
  512-d vectors) and a hashtable direct map for O(1) removal. Above ~50k vectors; nprobe trades recall
  for time (scripts/bench_index.py measures it).

IVF-SQ8 rather than HNSW: HNSW cannot remove vectors, and catalogue images are deleted and replaced.
"""

import math

import faiss
import numpy as np

FLAT = "flat"
FLAT_FP16 = "flat-fp16"
IVF_SQ8 = "ivf-sq8"
KINDS = (FLAT, FLAT_FP16, IVF_SQ8)  # in the order `auto` moves through them as a catalogue grows
TRAINING_POINTS_PER_LIST = 40  # FAISS warns below 39


def new_flat(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def new_flat_fp16(dim: int) -> faiss.Index:
    codes = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    return faiss.IndexIDMap2(codes)


def new_index(kind: str, vectors: np.ndarray, dim: int, count: int) -> faiss.Index:
    """An empty index of `kind` for about `count` vectors (IVF trained on a sample of `vectors`)."""
    if kind == IVF_SQ8:
        return train_ivf_sq8(vectors, dim, count)
    return new_flat_fp16(dim) if kind == FLAT_FP16 else new_flat(dim)


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
    if isinstance(index, faiss.IndexIVF):
        return IVF_SQ8
    return FLAT_FP16 if isinstance(faiss.downcast_index(index.index), faiss.IndexScalarQuantizer) else FLAT


def remove(index: faiss.Index, ids: np.ndarray) -> int:
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if kind_of(index) == IVF_SQ8:  # the hashtable direct map accepts only an explicit array
        return int(index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))
    return int(index.remove_ids(faiss.IDSelectorBatch(ids)))


def stored_ids(index: faiss.Index) -> np.ndarray:
    if kind_of(index) != IVF_SQ8:  # both flat kinds keep their ids in the IDMap2
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    lists = index.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy() for i in range(index.nlist)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def describe(index: faiss.Index) -> str:
    kind = kind_of(index)
    if kind == FLAT:
        return "flat (exact)"
    if kind == FLAT_FP16:
        return "flat-fp16 (every vector, 16-bit)"
    return f"ivf-sq8 ({index.nlist} lists, nprobe {index.nprobe})"
