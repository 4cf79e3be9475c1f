"""One photo search end to end over HTTP on a million-image catalogue, against the bare model; one line.

    python scripts/bench_search.py [--images 1000000] [--model openclip:ViT-B-32:random] [--searches 60]

Builds (once, cached) a catalogue database of --images image rows (10 products a family, 5 photos a
product, 20 products a factory) with catalogue-like embeddings, and its index through the real
FaissIndex.build (ivf-sq8 at this size); starts `sourcelens serve` on 127.0.0.1; then times sequential
searches (upload, decode, embed, search, aggregate, respond) from a client, and in the same run the bare
model's single-image forward pass at the same precision.
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
from app.models import Factory, Product
from app.models import Image as ImageRow
from app.sample_catalogue import Design, factory_palette, render_product
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


def photo() -> bytes:
    buffer = io.BytesIO()
    render_product(Design(seed=5, palette=factory_palette(5)), size=640).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


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
    image = photo()
    bare_ms, precision = bare_single_ms(args.model, image, args.searches)

    with running_server(data_dir, args.port, {"SOURCELENS_MODEL": args.model}) as base:
        health = httpx.get(f"{base}/healthz", timeout=5).json()
        times = []
        with httpx.Client(timeout=30) as client:
            for number in range(args.searches + 5):
                started = time.perf_counter()
                response = client.post(f"{base}/api/v1/search", files={"image": ("q.jpg", image, "image/jpeg")})
                response.raise_for_status()
                if number >= 5:  # warm-up first
                    times.append((time.perf_counter() - started) * 1000)
    p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
    print(
        f"bench_search: {health['images']:,}-image catalogue, index {health['index']}, model={args.model} "
        f"{precision} | HTTP search p50 {p50:.1f} ms, p99 {p99:.1f} ms | bare model single image p50 {bare_ms:.1f} ms"
        f" | ratio {p50 / bare_ms:.2f} | {os.cpu_count()} cores (catalogue built in {built_s:.0f} s)"
    )


if __name__ == "__main__":
    main()
