"""Photo searches end to end over HTTP on a million-image catalogue, against the bare model; one line.

    python scripts/bench_search.py [--images 1000000] [--model openclip:ViT-B-32:random] [--rounds 3]

Builds (once, cached) a catalogue database of --images image rows (10 products a family, 5 photos a
product, 20 products a factory) with catalogue-like embeddings, and its index through the real
FaissIndex.build (ivf-sq8 at this size), then ingests a small real catalogue into it through the normal
ingest path (local features included), so that searches find, verify and rank real photos among a million
vectors. It starts `sourcelens serve` on 127.0.0.1 and times sequential searches from a client with what
sellers search with: catalogue photos as competitors show them (every transform of
app/calibration/transforms.py: resized, cropped, mirrored, rotated, recoloured, padded, under a banner, in an
app screenshot) and photos of products the catalogue lacks. Each round of searches is followed by as many
bare single-image forward passes at the server's precision, so that both see the same machine.

Two modes in one run: the default search (verification, and the crops' second pass when it can change the
answer) and the fast path (verify=false, auto_crop=false). Each reports p50, p99, its ratio to the bare
forward, how often the second pass ran, and the server's stage times; the line names the CPU.
"""

import argparse
import io
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from sqlalchemy import insert

from app.bootstrap import build_services
from app.catalog.models import Factory, Product
from app.catalog.models import Image as ImageRow
from app.core.config import Settings
from app.core.db import make_engine
from app.database import upgrade
from app.demo.sample_catalogue import write_catalogue
from embeddings import Embedder, load_embedder
from index import FaissIndex

sys.path.insert(0, str(Path(__file__).parent))
from bench_index import clustered
from benchtools import Query, competitor_queries, machine, running_server


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


def add_real_products(data_dir: Path, spec: str) -> list[Path]:
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
    return sorted((manifest.parent / "images").glob("*-1.jpg"))


def post_search(client: httpx.Client, base: str, image: bytes, fields: dict[str, str]) -> tuple[float, dict]:
    """One search over HTTP: milliseconds, and the answer."""
    started = time.perf_counter()
    files = {"image": ("q.jpg", image, "image/jpeg")}
    response = client.post(f"{base}/api/v1/search", files=files, data=fields)
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000, response.json()


def bare_forward_ms(embedder: Embedder, pixels: np.ndarray) -> float:
    started = time.perf_counter()
    embedder.embed_pixels(pixels)
    return (time.perf_counter() - started) * 1000


@dataclass
class Run:
    """One kind of search over the query set: HTTP milliseconds, the answers, and the bare forward passes
    timed between them."""

    http: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    bodies: list[tuple[Query, dict]] = field(default_factory=list)

    def line(self, name: str) -> str:
        p50, p99, bare = np.percentile(self.http, 50), np.percentile(self.http, 99), np.percentile(self.bare, 50)
        second = sum("passes" in body["timings_ms"] for _, body in self.bodies) / len(self.bodies)
        return (
            f"{name} p50 {p50:.1f} ms, p99 {p99:.1f} ms, ratio {p50 / bare:.2f} (second pass in {second:.0%}; "
            f"stages {median_stages([body for _, body in self.bodies])})"
        )

    def answers(self) -> str:
        known = [(q, b) for q, b in self.bodies if q.factory]
        right = sum(bool(b["factories"]) and b["factories"][0]["factory_id"] == q.factory for q, b in known)
        wrong = sum(b["confident_match"] for q, b in self.bodies if not q.factory)
        return f"{right}/{len(known)} copies found, {wrong} unknown products answered confidently"


def interleaved(base: str, queries: list[Query], fields: dict[str, str], embedder: Embedder, rounds: int) -> Run:
    """Each round searches every query once over HTTP, then runs the bare forward pass as many times, so that
    the machine's drift (other tenants, frequency) touches both alike; the server idles while the bare model
    runs. The first round warms up."""
    pixels = embedder.preprocess(Image.open(io.BytesIO(queries[0].photo)).convert("RGB"))[None]
    run = Run()
    with httpx.Client(timeout=60) as client:
        for number in range(rounds + 1):
            searches = [(query, post_search(client, base, query.photo, fields)) for query in queries]
            forwards = [bare_forward_ms(embedder, pixels) for _ in queries]
            if number:
                run.http += [ms for _, (ms, _) in searches]
                run.bare += forwards
                run.bodies += [(query, body) for query, (_, body) in searches]
    return run


def median_stages(bodies: list[dict]) -> str:
    """The server's own timings per stage, median over the searches (0 where a search skipped the stage)."""
    stages = sorted({stage for body in bodies for stage in body["timings_ms"]} - {"passes"})
    return ", ".join(f"{k} {np.median([b['timings_ms'].get(k, 0) for b in bodies]):.1f}" for k in stages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--model", default="openclip:ViT-B-32:random")
    parser.add_argument("--rounds", type=int, default=3, help="times each of the 20 queries is searched per mode")
    parser.add_argument("--port", type=int, default=8793)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "sourcelens-bench-search")
    args = parser.parse_args()

    dim = load_embedder(args.model, precision="fp32").dim
    data_dir = args.workdir / f"data-{args.images}"
    started = time.perf_counter()
    build_catalogue(data_dir, args.images, args.model, dim)
    built_s = time.perf_counter() - started
    queries = competitor_queries(add_real_products(data_dir, args.model), unknown=4)
    embedder = load_embedder(args.model, precision="auto")  # the server's model at the server's precision

    with running_server(data_dir, args.port, {"SOURCELENS_MODEL": args.model}) as base:
        default = interleaved(base, queries, {}, embedder, args.rounds)
        fast = interleaved(base, queries, {"verify": "false", "auto_crop": "false"}, embedder, args.rounds)
        health = httpx.get(f"{base}/healthz", timeout=5).json()  # the index as searched (preloaded by now)
    bare = np.percentile(default.bare + fast.bare, 50)
    for name, run in (("default", default), ("fast path", fast)):
        print(f"{name}: {run.answers()}", file=sys.stderr)
    print(
        f"bench_search: {health['images']:,}-image catalogue, index {health['index']}, model={args.model} "
        f"{embedder.precision} | {len(queries)} competitor photos (8 transforms of catalogue photos x 2, 4 unknown "
        f"products) x {args.rounds} over HTTP | bare model single image p50 {bare:.1f} ms | "
        f"{default.line('default')} | {fast.line('fast path (verify=false, auto_crop=false)')} | {machine()} "
        f"(catalogue built in {built_s:.0f} s)"
    )


if __name__ == "__main__":
    main()
