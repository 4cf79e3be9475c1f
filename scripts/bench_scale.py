"""Vector stores at scale: FAISS (the kind SourceLens picks for the size) and Milvus Lite on the same
catalogue-like vectors; one line per figure group, then a summary line.

    python scripts/bench_scale.py [--vectors 1000000] [--dim 512] [--queries 1000] [--milvus-queries 100]

Data is bench_index.py's: clustered like real catalogues (product families, products, photos), queries are fresh
draws near indexed items. Each vector carries catalogue fields as SourceLens stores them beside a vector (factory
of 100, category of 20, the factory's region of 5, price, MOQ), drawn independently of the vector, so the 1%
filter used here (one factory of 100, a different random factory per query) keeps 1% of the catalogue with no
relation to where the query lies: the hard case for a graph index, which must find the passing 1% through
vectors that mostly fail. Ground truth is exact inner-product search, computed once (IndexFlatIP), and for a
filtered search exact search over the ids that pass the filter.

Per store: build time (FAISS: `index_type=auto` training and adding, which at this size is IVF-SQ8, the kind the
keeper rebuilds into past its threshold; Milvus Lite: upserts through index/milvus_index.py, the flush, and the
HNSW build of every segment, which Milvus Lite runs in a background thread and which is waited for), memory,
recall@10, p50/p99 of single queries without and with the filter (FAISS gets the passing ids as `allowed`, as
the server passes them; Milvus gets the filter as `where`, applied inside it), and filtered recall@10.

Throughput: `sourcelens serve --workers N` needs a Milvus server the processes share (a FAISS index lives in one
process and a Milvus Lite file opens in one process), and each API search runs the model first (bench_load.py
measures that). So the throughput line measures N processes each opening the saved FAISS index file, as an API
process does (memory-mapped, then read into memory), and searching single queries concurrently with one FAISS
thread each (the server's default): the vector-search ceiling of N API processes on this machine, without HTTP
or the model.

Milvus Lite 3.x is a Python engine meant for tests (segments of up to 100k rows, a FAISS HNSW per segment, scalar
filters and deduplication evaluated in Python per search): its latencies are not Milvus standalone's.
"""

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index import FaissIndex, VectorFields, VectorFilter, open_index

sys.path.insert(0, str(Path(__file__).parent))
from bench_index import clustered, loaded_megabytes, near_queries, recall_at, resident_megabytes
from benchtools import machine

EMBEDDER = "bench-scale"
FACTORIES = 100  # one factory's filter keeps 1% of the catalogue
CATEGORIES = 20
REGIONS = 5
K = 10
GOAL = 0.95  # filtered recall@10 in Milvus with a 1% filter (issue 18)


def catalogue_fields(count: int, seed: int) -> tuple[np.ndarray, list[VectorFields]]:
    """Each vector's factory number, and the fields stored beside it."""
    rng = np.random.default_rng(seed)
    factory = rng.integers(0, FACTORIES, count)
    category = rng.integers(0, CATEGORIES, count)
    price = np.round(rng.lognormal(1.5, 1.0, count), 2)
    moq = rng.choice([1, 10, 50, 100, 500, 1000], count)
    fields = [
        VectorFields(factory_id=f"F{f:03d}", region=f"R{f % REGIONS}", category=f"C{c:02d}", price=float(p), moq=int(m))
        for f, c, p, m in zip(factory, category, price, moq, strict=True)
    ]
    return factory, fields


def filtered_truth(data: np.ndarray, queries: np.ndarray, members: Sequence[np.ndarray]) -> np.ndarray:
    """Exact top k of each query among the ids (1-based) in its filter's members."""
    out = np.empty((len(queries), K), np.int64)
    for row, (query, passing) in enumerate(zip(queries, members, strict=True)):
        scores = data[passing] @ query
        top = np.argpartition(-scores, K)[:K]
        out[row] = passing[top[np.argsort(-scores[top])]] + 1
    return out


def timed(search: Callable[[int], np.ndarray], count: int, warm: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Runs search(i) for each query i once (after `warm` untimed calls): the ids found, and milliseconds."""
    for i in range(min(warm, count)):
        search(i)
    found, took = [], []
    for i in range(count):
        started = time.perf_counter()
        found.append(search(i)[:K])
        took.append((time.perf_counter() - started) * 1000)
    return np.stack(found), np.array(took)


def percentiles(ms: np.ndarray) -> str:
    return f"p50 {np.percentile(ms, 50):,.1f} ms, p99 {np.percentile(ms, 99):,.1f} ms"


def disk_megabytes(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


# --- FAISS ------------------------------------------------------------------------------------------------


def bench_faiss(
    directory: Path,
    data: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    members: Sequence[np.ndarray],
    ftruth: np.ndarray,
) -> tuple[str, float]:
    ids = np.arange(1, len(data) + 1, dtype=np.int64)
    started = time.perf_counter()
    index = FaissIndex.build(directory, EMBEDDER, data.shape[1], "auto", ids, data)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    index.save()
    save_s = time.perf_counter() - started
    found, ms = timed(lambda i: index.search(queries[i : i + 1], K)[1][0], len(queries))
    allowed = [m + 1 for m in members]
    ffound, fms = timed(lambda i: index.search(queries[i : i + 1], K, allowed=allowed[i])[1][0], len(queries))
    line = (
        f"bench_scale faiss: {len(data):,}×{data.shape[1]} clustered, {len(queries)} near-item queries, "
        f"{faiss.omp_get_max_threads()} threads | index_type auto → {index.describe()} | build {build_s:.0f} s "
        f"(train + add; save {save_s:.0f} s), {loaded_megabytes(directory):,.0f} MB in memory "
        f"({disk_megabytes(directory):,.0f} MB file) | recall@10 {recall_at(found, truth, K):.3f}, {percentiles(ms)} | "
        f"1% filter (one factory of {FACTORIES}, allowed ids): recall@10 {recall_at(ffound, ftruth, K):.3f}, "
        f"{percentiles(fms)} | {machine()}"
    )
    return line, build_s


# --- Milvus Lite ------------------------------------------------------------------------------------------


def wait_for_lite_indexes(store: str, collection: str) -> list[Any]:
    """Milvus Lite builds a segment's HNSW in a background thread after a flush, and searches a segment without
    one by brute force: wait until every segment has its index. Returns the segments' HNSW indexes. Reaches into
    Milvus Lite's in-process server (its gRPC DescribeIndex always answers 'finished')."""
    from milvus_lite.server_manager import server_manager_instance

    _, db, _ = server_manager_instance._servers[os.path.abspath(store)]
    lite = db.get_collection(collection)
    for _ in range(20):
        lite._wait_for_bg()
        segments = [s for s in lite._segments_snapshot() if s.num_rows]
        if all("vector" in s.indexes for s in segments):
            return [s.indexes["vector"] for s in segments]
        lite._ensure_loaded_segments_indexed()
    raise SystemExit("Milvus Lite did not finish building its segment indexes")


def graph_walk_ms(graphs: Sequence[Any], queries: np.ndarray, ef: int) -> tuple[np.ndarray, np.ndarray]:
    """Milliseconds per query, wall and CPU (this process's), of the HNSW graph searches alone (every segment's,
    one thread, no filter): what a compiled engine such as Milvus standalone spends, without Milvus Lite's
    per-search Python work. CPU time is what capacity needs: on a shared machine the wall time includes waiting."""
    wall, cpu = [], []
    for query in queries:
        started, started_cpu = time.perf_counter(), time.process_time()
        for graph in graphs:
            graph.search(query[None, :], K, params={"ef": ef})
        cpu.append((time.process_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
    return np.array(wall), np.array(cpu)


def bench_milvus_lite(
    directory: Path,
    data: np.ndarray,
    fields: list[VectorFields],
    queries: np.ndarray,
    truth: np.ndarray,
    factories: np.ndarray,
    ftruth: np.ndarray,
    extra_ef: Sequence[int],
) -> tuple[str, float, float]:
    import milvus_lite

    from index.milvus_index import MilvusIndex

    directory.mkdir(parents=True, exist_ok=True)
    store = str(directory / "bench.db")
    before = resident_megabytes()
    index = open_index(directory, EMBEDDER, data.shape[1], store=store)
    assert isinstance(index, MilvusIndex)
    started = time.perf_counter()
    for start in range(0, len(data), 10_000):
        stop = min(len(data), start + 10_000)
        index.upsert(np.arange(start + 1, stop + 1, dtype=np.int64), data[start:stop], fields[start:stop])
    insert_s = time.perf_counter() - started
    index.client.flush(index.collection)
    flush_s = time.perf_counter() - started - insert_s
    graphs = wait_for_lite_indexes(store, index.collection)
    index_s = time.perf_counter() - started - insert_s - flush_s
    build_s = time.perf_counter() - started
    grown = resident_megabytes() - before
    count = len(index)
    if count != len(data):
        raise SystemExit(f"Milvus Lite holds {count} vectors, {len(data)} were written")

    described = index.describe().split(", collection")[0]  # before the wider searches change its ef
    found, ms = timed(lambda i: index.search(queries[i : i + 1], K)[1][0], len(queries))
    walk_ms, walk_cpu_ms = graph_walk_ms(graphs, queries, index.ef)
    wheres = [VectorFilter(factory_ids=(f"F{f:03d}",)) for f in factories]
    ffound, fms = timed(lambda i: index.search(queries[i : i + 1], K, where=wheres[i])[1][0], len(queries))
    filtered_recall = recall_at(ffound, ftruth, K)
    wider = ""
    for ef in extra_ef:  # what another breadth gives (MilvusIndex: ef 128, 4096 when filtered; settings)
        index.filtered_ef = ef
        efound, ems = timed(lambda i: index.search(queries[i : i + 1], K, where=wheres[i])[1][0], len(queries))
        wider += f"; at ef {ef}: recall@10 {recall_at(efound, ftruth, K):.3f}, {percentiles(ems)}"
    line = (
        f"bench_scale milvus-lite: {len(data):,}×{data.shape[1]} clustered, {len(queries)} near-item queries | "
        f"milvus-lite {milvus_lite.__version__} {described}, {len(graphs)} segment{'s' if len(graphs) > 1 else ''} | "
        f"build {build_s:.0f} s (upsert {insert_s:.0f} s, flush {flush_s:.0f} s, segment HNSW {index_s:.0f} s), "
        f"RSS +{grown:,.0f} MB, {disk_megabytes(directory):,.0f} MB on disk | "
        f"recall@10 {recall_at(found, truth, K):.3f}, {percentiles(ms)} "
        f"(the segments' HNSW walks alone, 1 thread: {percentiles(walk_ms)}; CPU p50 "
        f"{np.percentile(walk_cpu_ms, 50):.2f} ms, mean {walk_cpu_ms.mean():.2f} ms) | "
        f"1% filter (one factory of {FACTORIES}, where factory_id in […] inside Milvus): "
        f"recall@10 {filtered_recall:.3f}, {percentiles(fms)}{wider} | {machine()}"
    )
    index.close()
    return line, filtered_recall, build_s


# --- throughput of N processes ----------------------------------------------------------------------------


def _searcher(
    directory: str, queries_path: str, dim: int, seconds: float, barrier: Barrier, counts: "mp.Queue"
) -> None:
    """One API process's vector search: open the saved index as the server does, then search until time's up."""
    index = FaissIndex.open(Path(directory), EMBEDDER, dim, "auto", search_threads=1)
    index.preload()
    queries = np.load(queries_path)
    barrier.wait()
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        index.search(queries[done % len(queries)][None, :], K)
        done += 1
    counts.put(done)


def throughput(directory: Path, queries: np.ndarray, seconds: float, processes: Sequence[int]) -> str:
    queries_path = directory.parent / "queries.npy"
    np.save(queries_path, queries)
    context = mp.get_context("spawn")  # no fork of a process that holds OpenMP and Milvus Lite threads
    rates = []
    for n in processes:
        barrier, counts = context.Barrier(n), context.Queue()
        workers = [
            context.Process(
                target=_searcher, args=(str(directory), str(queries_path), queries.shape[1], seconds, barrier, counts)
            )
            for _ in range(n)
        ]
        for worker in workers:
            worker.start()
        total = sum(counts.get(timeout=600) for _ in workers)
        for worker in workers:
            worker.join()
        rates.append(f"{n} process{'es' if n > 1 else ''} {total / seconds:,.0f} searches/s")
    return (
        f"bench_scale throughput: N processes each opening the saved FAISS index file and searching single "
        f"queries concurrently for {seconds:.0f} s, 1 FAISS thread each (multiprocessing, not HTTP: "
        f"no model, no API) | {' | '.join(rates)} | {machine()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000, help="for FAISS")
    parser.add_argument("--milvus-queries", type=int, default=100, help="the first of the same queries")
    parser.add_argument("--families", type=int, default=0, help="ten products each; 0: vectors / 50")
    parser.add_argument("--seconds", type=float, default=10, help="per throughput measurement")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--extra-ef", default="1024", help="filtered Milvus searches again at these ef; '' for none")
    parser.add_argument("--skip-milvus", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    families = args.families or max(1, args.vectors // 50)
    data = clustered(args.vectors, args.dim, families, seed=1)
    queries = near_queries(data, args.queries, seed=2)
    factory, fields = catalogue_fields(args.vectors, seed=3)
    by_factory = [np.flatnonzero(factory == f) for f in range(FACTORIES)]
    query_factories = np.random.default_rng(4).integers(0, FACTORIES, args.queries)
    members = [by_factory[f] for f in query_factories]
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(data)
    truth = flat.search(queries, K)[1] + 1
    del flat
    ftruth = filtered_truth(data, queries, members)
    kept = np.mean([len(m) for m in members]) / args.vectors
    print(
        f"bench_scale data: {args.vectors:,}×{args.dim} clustered ({families:,} families), 1% filter keeps "
        f"{kept:.2%} on average, exact ground truth (unfiltered and filtered) in {time.perf_counter() - started:.0f} s",
        flush=True,
    )

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        faiss_line, _ = bench_faiss(work / "faiss", data, queries, truth, members, ftruth)
        print(faiss_line, flush=True)
        processes = [int(n) for n in args.processes.split(",")]
        print(throughput(work / "faiss", queries, args.seconds, processes), flush=True)
        if args.skip_milvus:
            return
        m = min(args.milvus_queries, args.queries)
        extra_ef = [int(ef) for ef in args.extra_ef.split(",") if ef]
        milvus_line, filtered_recall, _ = bench_milvus_lite(
            work / "milvus", data, fields, queries[:m], truth[:m], query_factories[:m], ftruth[:m], extra_ef
        )
        print(milvus_line, flush=True)
        verdict = "met" if filtered_recall >= GOAL else "MISSED"
        print(
            f"bench_scale summary: {args.vectors:,} vectors | Milvus Lite filtered recall@10 {filtered_recall:.3f} "
            f"with a 1% filter vs goal ≥ {GOAL}: {verdict} | total {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
