"""Vector index at catalogue scale: recall, single-query latency, memory and build time; one line.

    python scripts/bench_index.py [--vectors 1000000] [--dim 512] [--queries 1000]

Data is clustered like real catalogues (many products, several photos each, product families): a mixture of
Gaussian clusters on the unit sphere, not uniform noise. Queries are fresh draws near indexed items, as a
seller's photo is near a catalogue photo. Ground truth is exact inner-product search. Both SourceLens's
large-catalogue index and plain IndexFlatIP are measured in the same run, single queries, on this machine's
threads.
"""

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from app.core.cores import usable_cores
from index import FaissIndex


def clustered(count: int, dim: int, families: int, seed: int) -> np.ndarray:
    """Catalogue-like vectors: product families, ten products per family, photos of each product."""
    rng = np.random.default_rng(seed)
    family_centres = rng.standard_normal((families, dim), dtype=np.float32)
    products = family_centres.repeat(10, axis=0) + rng.standard_normal((families * 10, dim), dtype=np.float32) * 0.6
    out = np.empty((count, dim), np.float32)
    for start in range(0, count, 100_000):  # in chunks: 1M×512 float32 is 2 GB already
        stop = min(count, start + 100_000)
        owner = rng.integers(0, len(products), stop - start)
        chunk = products[owner] + rng.standard_normal((stop - start, dim), dtype=np.float32) * 0.35
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def near_queries(data: np.ndarray, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = data[rng.integers(0, len(data), count)]
    noisy = picked + rng.standard_normal(picked.shape, dtype=np.float32) * 0.035  # cosine ~0.7 to the item
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def latencies_ms(search: Callable[[np.ndarray], object], queries: np.ndarray) -> np.ndarray:
    out = []
    for query in queries:
        started = time.perf_counter()
        search(query[None, :])
        out.append((time.perf_counter() - started) * 1000)
    return np.array(out)


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth, strict=True)]))


def resident_megabytes() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def loaded_megabytes(directory: Path) -> float:
    """Resident memory taken by reading the saved index fully into memory (no memory mapping)."""
    before = resident_megabytes()
    loaded = faiss.read_index(str(next(directory.glob("faiss-*.index"))))
    grown = resident_megabytes() - before
    del loaded
    return grown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--families", type=int, default=20_000, help="ten products each, ~5 photos a product")
    parser.add_argument("--index", default="ivf-sq8")
    args = parser.parse_args()

    data = clustered(args.vectors, args.dim, args.families, seed=1)
    queries = near_queries(data, args.queries, seed=2)
    ids = np.arange(1, len(data) + 1, dtype=np.int64)

    flat = faiss.IndexFlatIP(args.dim)
    flat.add(data)
    started = time.perf_counter()
    _, truth = flat.search(queries, 10)
    truth = truth + 1
    exact_batch_s = time.perf_counter() - started
    flat_ms = latencies_ms(lambda q: flat.search(q, 10), queries[:100])

    directory = Path(tempfile.mkdtemp(prefix="bench-index-"))
    started = time.perf_counter()
    index = FaissIndex.build(directory, "bench", args.dim, args.index, ids, data)
    build_s = time.perf_counter() - started
    index.save()
    found = np.stack([index.search(q[None, :], 10)[1][0] for q in queries])
    ours_ms = latencies_ms(lambda q: index.search(q, 10), queries)

    print(
        f"bench_index: {args.vectors:,}×{args.dim} clustered, {args.queries} near-item queries, "
        f"{faiss.omp_get_max_threads()} threads | {index.describe()}: recall@10 {recall_at(found, truth, 10):.3f}, "
        f"p50 {np.percentile(ours_ms, 50):.2f} ms, p99 {np.percentile(ours_ms, 99):.2f} ms, "
        f"{loaded_megabytes(directory):,.0f} MB in memory, build {build_s:.0f} s | IndexFlatIP: recall 1.000, "
        f"p50 {np.percentile(flat_ms, 50):.1f} ms, p99 {np.percentile(flat_ms, 99):.1f} ms, "
        f"{data.nbytes / 2**20:,.0f} MB | p99 speed-up {np.percentile(flat_ms, 99) / np.percentile(ours_ms, 99):.0f}x"
        f" | {usable_cores()} cores; exact batch ground truth {exact_batch_s:.0f} s"
    )


if __name__ == "__main__":
    main()
