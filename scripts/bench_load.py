"""Searches under concurrent load over HTTP on loopback, against the bare batched model; one line.

    python scripts/bench_load.py [--clients 16] [--seconds 30] [--model openclip:ViT-B-32:random]

Starts `sourcelens serve` on 127.0.0.1 over a small ingested catalogue, then --clients threads post photo
searches back to back for --seconds (bounded in time and loopback only), with what sellers search with: the
catalogue's photos as competitors show them (every transform) and photos of products it lacks. Twice in one
run: the default search, then the fast path (verify=false, auto_crop=false). Reports searches/s, p50/p99 and
errors of each, beside the bare batched model rate (same model, precision and batch size, pre-processed
tensors) measured in the same run on the same machine, and names the CPU.
"""

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from app.bootstrap import build_services
from app.core.config import Settings
from app.demo.sample_catalogue import write_catalogue
from embeddings import load_embedder

sys.path.insert(0, str(Path(__file__).parent))
from benchtools import competitor_queries, machine, running_server

FAST = {"verify": "false", "auto_crop": "false"}


def bare_batched_rate(spec: str, batch: int) -> tuple[float, str]:
    embedder = load_embedder(spec, precision="auto", batch_size=batch)
    size = embedder.preprocess.size
    pixels = np.random.default_rng(0).standard_normal((batch * 6, 3, size, size)).astype(np.float32)
    embedder.embed_pixels(pixels[:batch])
    started = time.perf_counter()
    embedder.embed_pixels(pixels)
    return len(pixels) / (time.perf_counter() - started), embedder.precision


def prepare(workdir: Path, spec: str) -> tuple[Path, list[bytes]]:
    data_dir = workdir / "data"
    manifest = write_catalogue(workdir / "catalogue", factories=6, products_per_factory=6, size=640)
    services = build_services(Settings(data_dir=data_dir, model=spec))
    services.ingest.ingest_manifest(manifest)
    services.close()
    queries = competitor_queries(sorted((manifest.parent / "images").glob("*-1.jpg")), unknown=4)
    return data_dir, [query.photo for query in queries]


def load(
    url: str, photos: list[bytes], fields: dict[str, str], clients: int, seconds: float
) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = [0]
    stop_at = time.monotonic() + seconds

    def client(number: int) -> None:
        with httpx.Client(timeout=30) as http:
            i = number
            while time.monotonic() < stop_at:
                files = {"image": ("q.jpg", photos[i % len(photos)], "image/jpeg")}
                started = time.perf_counter()
                ok = http.post(url, files=files, data={"top_k": "5", **fields}).status_code == 200
                latencies.append(time.perf_counter() - started) if ok else errors.__setitem__(0, errors[0] + 1)
                i += clients

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--model", default="openclip:ViT-B-32:random")
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="sourcelens-bench-load-"))
    data_dir, photos = prepare(workdir, args.model)
    bare, precision = bare_batched_rate(args.model, Settings().search_batch_max)
    with running_server(data_dir, args.port, {"SOURCELENS_MODEL": args.model}) as base:
        url = f"{base}/api/v1/search"
        load(url, photos, {}, args.clients, 3)  # warm-up
        lines = [measure(base, photos, {}, args, bare), measure(base, photos, FAST, args, bare)]
    print(
        f"bench_load: {args.clients} clients for {args.seconds:.0f}s over loopback HTTP, model={args.model} "
        f"{precision}, {len(photos)} competitor photos (8 transforms x 2, 4 unknown products) | bare batched model "
        f"{bare:.1f} img/s | default {lines[0]} | fast path (verify=false, auto_crop=false) {lines[1]} | {machine()}"
    )


def measure(base: str, photos: list[bytes], fields: dict[str, str], args: argparse.Namespace, bare: float) -> str:
    """One load run: its rate, latencies, errors and batching, and its ratio to the bare batched model."""
    before = httpx.get(f"{base}/healthz").json()
    started = time.perf_counter()
    latencies, errors = load(f"{base}/api/v1/search", photos, fields, args.clients, args.seconds)
    elapsed = time.perf_counter() - started
    after = httpx.get(f"{base}/healthz").json()
    rate = len(latencies) / elapsed
    batches = after["search_batches"] - before["search_batches"]
    mean_batch = (after["searches_embedded"] - before["searches_embedded"]) / max(batches, 1)
    busy = (after["model_busy_s"] - before["model_busy_s"]) / elapsed
    ms = np.array(latencies) * 1000
    return (
        f"{rate:.1f} searches/s, p50 {np.percentile(ms, 50):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms, "
        f"{errors} errors, mean batch {mean_batch:.1f}, model busy {busy:.0%}, ratio {rate / bare:.2f}"
    )


if __name__ == "__main__":
    main()
