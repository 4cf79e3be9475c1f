"""One photo search end to end over HTTP on a million-image catalogue, against the bare model; one line.

    python scripts/bench_search.py [--images 1000000] [--model openclip:ViT-B-32:random] [--searches 60]

Builds (once, cached) a catalogue database of --images image rows (10 products a family, 5 photos a
product, 20 products a factory) with catalogue-like embeddings, and its index through the real
FaissIndex.build (ivf-sq8 at this size), then ingests a small real catalogue into it through the normal
ingest path, so that searches find, verify and rank real photos among a million vectors. It starts
`sourcelens serve` on 127.0.0.1 and times sequential default searches (upload, decode, embed, search,
verify, aggregate, respond) from a client with a competitor's copy of a catalogue photo (resized and
recompressed), interleaved with the bare model's single-image forward pass at the same precision.
The line also gives the latency of a photo the catalogue lacks, which is searched again with its crops.
"""

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from sqlalchemy import insert

from app.bootstrap import build_services
from app.calibration.transforms import competitor_photo
from app.catalog.models import Factory, Product
from app.catalog.models import Image as ImageRow
from app.core.config import Settings
from app.core.cores import usable_cores
from app.core.db import make_engine
from app.database import upgrade
from app.demo.sample_catalogue import Design, factory_palette, render_product, write_catalogue
from embeddings import Embedder, load_embedder
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
    upgrade(engine)
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
        services = build_services(Settings(data_dir=data_dir, model=spec))
        try:
            report = services.ingest.ingest_manifest(manifest)
            if report.failed:
                raise SystemExit(f"ingesting the real products failed: {report.summary()}")
        finally:
            services.close()
        marker.touch()
    return manifest.parent / "images" / "F002-P003-1.jpg"


def unknown_photo() -> bytes:
    buffer = io.BytesIO()
    render_product(Design(seed=5, palette=factory_palette(5)), size=640).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def post_search(client: httpx.Client, base: str, image: bytes) -> tuple[float, dict]:
    """One search over HTTP: milliseconds, and the answer."""
    started = time.perf_counter()
    response = client.post(f"{base}/api/v1/search", files={"image": ("q.jpg", image, "image/jpeg")})
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000, response.json()


def bare_forward_ms(embedder: Embedder, pixels: np.ndarray) -> float:
    started = time.perf_counter()
    embedder.embed_pixels(pixels)
    return (time.perf_counter() - started) * 1000


def interleaved(
    base: str, image: bytes, embedder: Embedder, rounds: int
) -> tuple[list[float], list[float], list[dict]]:
    """HTTP searches and bare forward passes in alternating blocks of five, so that the machine's drift (other
    tenants, frequency) touches both alike; the server idles while the bare model runs. Five of each warm up."""
    pixels = embedder.preprocess(Image.open(io.BytesIO(image)).convert("RGB"))[None]
    http, bare, bodies = [], [], []
    with httpx.Client(timeout=30) as client:
        for number in range(rounds + 1):
            searches = [post_search(client, base, image) for _ in range(5)]
            forwards = [bare_forward_ms(embedder, pixels) for _ in range(5)]
            if number:
                http += [ms for ms, _ in searches]
                bare += forwards
                bodies += [body for _, body in searches]
    return http, bare, bodies


def median_stages(bodies: list[dict]) -> str:
    """The server's own timings per stage, median over the searches."""
    stages = bodies[0]["timings_ms"].keys()
    return ", ".join(f"{k} {np.median([b['timings_ms'].get(k, 0) for b in bodies]):.1f}" for k in stages)


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
    embedder = load_embedder(args.model, precision="auto")  # the server's model at the server's precision

    with running_server(data_dir, args.port, {"SOURCELENS_MODEL": args.model}) as base:
        times, bare, bodies = interleaved(base, query, embedder, max(1, args.searches // 5))
        health = httpx.get(f"{base}/healthz", timeout=5).json()  # the index as searched (preloaded by now)
        body = bodies[-1]
        if not body["confident_match"] or body["factories"][0]["factory_id"] != "F002":
            raise SystemExit(f"the catalogue photo was not found: {body}")
        with httpx.Client(timeout=30) as client:
            unknown = [post_search(client, base, unknown_photo()) for _ in range(max(6, args.searches // 5))]
        unknown_body = unknown[-1][1]
        unknown_bodies = [b for _, b in unknown[1:]]
        if "passes" not in unknown_body["timings_ms"] or unknown_body["confident_match"]:
            raise SystemExit(f"the unknown photo did not take the second pass: {unknown_body}")
    p50, p99, bare_ms = np.percentile(times, 50), np.percentile(times, 99), np.percentile(bare, 50)
    unknown_ms = np.percentile([ms for ms, _ in unknown[1:]], 50)
    for name, answers in (("catalogue photo", bodies), ("photo the catalogue lacks", unknown_bodies)):
        print(f"{name}: server stages, median ms: {median_stages(answers)}", file=sys.stderr)
    print(
        f"bench_search: {health['images']:,}-image catalogue, index {health['index']}, model={args.model} "
        f"{embedder.precision} | HTTP search of a catalogue photo p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"| bare model single image p50 {bare_ms:.1f} ms | ratio {p50 / bare_ms:.2f} "
        f"| a photo the catalogue lacks (searched again with its crops) p50 {unknown_ms:.1f} ms "
        f"| {usable_cores()} cores (catalogue built in {built_s:.0f} s)"
    )


if __name__ == "__main__":
    main()
