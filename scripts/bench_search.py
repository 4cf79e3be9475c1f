"""One photo search end to end over HTTP on a million-image catalogue, against the bare model; one line.

    python scripts/bench_search.py [--images 1000000] [--model openclip:ViT-B-32:random] [--searches 60]

Builds (once, cached) a catalogue database of --images image rows (10 products a family, 5 photos a
product, 20 products a factory) with catalogue-like embeddings, and its index through the real
FaissIndex.build (ivf-sq8 at this size), then ingests a small real catalogue into it through the normal
ingest path, so that searches find, verify and rank real photos among a million vectors. It starts
`sourcelens serve` on 127.0.0.1 and times sequential default searches (upload, decode, embed, search,
verify, aggregate, respond) from a client with a competitor's copy of a catalogue photo (resized and
recompressed), and in the same run the bare model's single-image forward pass at the same precision.
The line also gives the latency of a photo the catalogue lacks, which is searched again with its crops.
"""

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from sqlalchemy import insert

from app.config import Settings
from app.db import create_tables, make_engine
from app.evaluation import competitor_photo
from app.models import Factory, Product
from app.models import Image as ImageRow
from app.runtime import Runtime
from app.sample_catalogue import Design, factory_palette, render_product, write_catalogue
from app.services.ingest import ingest_manifest
from embeddings import load_embedder
from index import FaissIndex

sys.path.insert(0, str(Path(__file__).parent))
from bench_index import clustered
from benchtools import running_server


def build_catalogue(data_dir: Path, images: int, spec: str, dim: int) -> None:
    if (data_dir / "index" / "meta.json").exists():
        return
    settings = Settings(data_dir=data_dir, model=spec)
    settings.ensure_dirs()
    engine = make_engine(settings.resolved_database_url)
    create_tables(engine)
    vectors = clustered(images, dim, families=max(1, images // 50), seed=1)
    products = images // 5
    with engine.begin() as connection:
        connection.execute(
            insert(Factory),
            [
                {"id": f"F{f}", "name": f"Factory {f}", "region": "Yiwu", "attributes": {}}
                for f in range(products // 20 + 1)
            ],
        )
        connection.execute(
            insert(Product),
            [
                {"id": f"P{p}", "factory_id": f"F{p // 20}", "title": f"Product {p}", "attributes": {}}
                for p in range(products)
            ],
        )
    for start in range(0, images, 50_000):
        rows = [
            {
                "id": i + 1,
                "product_id": f"P{i % products}",
                "content_hash": f"{i:064x}",
                "source": "bench",
                "width": 640,
                "height": 640,
                "embedder": spec,
                "embedding": vectors[i].tobytes(),
            }
            for i in range(start, min(images, start + 50_000))
        ]
        with engine.begin() as connection:
            connection.execute(insert(ImageRow), rows)
    engine.dispose()
    index = FaissIndex.build(settings.index_dir, spec, dim, "auto", np.arange(1, images + 1), vectors)
    index.save()


def add_real_products(data_dir: Path, spec: str) -> Path:
    """A small real catalogue (4 factories, 20 products, 40 photos), ingested once into the big one."""
    manifest = write_catalogue(data_dir.parent / "real-catalogue", factories=4, products_per_factory=5, size=640)
    marker = data_dir / "real-products-added"
    if not marker.exists():
        runtime = Runtime.start(Settings(data_dir=data_dir, model=spec))
        try:
            report = ingest_manifest(runtime, manifest)
            if report.failed:
                raise SystemExit(f"ingesting the real products failed: {report.summary()}")
        finally:
            runtime.close()
        marker.touch()
    return manifest.parent / "images" / "F002-P003-1.jpg"


def unknown_photo() -> bytes:
    buffer = io.BytesIO()
    render_product(Design(seed=5, palette=factory_palette(5)), size=640).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def time_searches(base: str, image: bytes, count: int) -> tuple[list[float], dict]:
    """Milliseconds per search, after five warm-up searches; and the last answer."""
    times, body = [], {}
    with httpx.Client(timeout=30) as client:
        for number in range(count + 5):
            started = time.perf_counter()
            response = client.post(f"{base}/api/v1/search", files={"image": ("q.jpg", image, "image/jpeg")})
            response.raise_for_status()
            if number >= 5:
                times.append((time.perf_counter() - started) * 1000)
            body = response.json()
    return times, body


def bare_single_ms(spec: str, image: bytes, runs: int) -> tuple[float, str]:
    embedder = load_embedder(spec, precision="auto")
    pixels = embedder.preprocess(Image.open(io.BytesIO(image)).convert("RGB"))[None]
    for _ in range(5):
        embedder.embed_pixels(pixels)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        embedder.embed_pixels(pixels)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times)), embedder.precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--model", default="openclip:ViT-B-32:random")
    parser.add_argument("--searches", type=int, default=60)
    parser.add_argument("--port", type=int, default=8793)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "sourcelens-bench-search")
    args = parser.parse_args()

    dim = load_embedder(args.model, precision="fp32").dim
    data_dir = args.workdir / f"data-{args.images}"
    started = time.perf_counter()
    build_catalogue(data_dir, args.images, args.model, dim)
    built_s = time.perf_counter() - started
    query = competitor_photo(add_real_products(data_dir, args.model), "resize", seed=0)
    bare_ms, precision = bare_single_ms(args.model, query, args.searches)

    with running_server(data_dir, args.port, {"SOURCELENS_MODEL": args.model}) as base:
        health = httpx.get(f"{base}/healthz", timeout=5).json()
        times, body = time_searches(base, query, args.searches)
        if not body["confident_match"] or body["factories"][0]["factory_id"] != "F002":
            raise SystemExit(f"the catalogue photo was not found: {body}")
        unknown, unknown_body = time_searches(base, unknown_photo(), max(10, args.searches // 3))
    p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
    for name, answer in (("catalogue photo", body), ("photo the catalogue lacks", unknown_body)):
        stages = ", ".join(f"{k} {v:.1f}" for k, v in answer["timings_ms"].items())
        print(f"{name}, last search's server stages (ms): {stages}", file=sys.stderr)
    print(
        f"bench_search: {health['images']:,}-image catalogue, index {health['index']}, model={args.model} "
        f"{precision} | HTTP search of a catalogue photo p50 {p50:.1f} ms, p99 {p99:.1f} ms | bare model single "
        f"image p50 {bare_ms:.1f} ms | ratio {p50 / bare_ms:.2f} | a photo the catalogue lacks (searched again with "
        f"its crops) p50 {np.percentile(unknown, 50):.1f} ms | {os.cpu_count()} cores "
        f"(catalogue built in {built_s:.0f} s)"
    )


if __name__ == "__main__":
    main()
