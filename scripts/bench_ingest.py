"""Ingest throughput against the bare model, measured in one run; prints one comparable line.

    python scripts/bench_ingest.py [--images 2000] [--model openclip:ViT-B-32:random]

1. Builds (once, cached) a catalogue of >= --images JPEGs of mixed sizes, one in 20 a 3000×3000 photo.
2. Bare model loop: the same embedder and precision on pre-decoded, pre-processed tensors, same batch size.
3. Plain fp32 open_clip loop: open_clip's own transform on each decoded photo, fp32 weights, batched.
4. Full ingest of the catalogue through the real job pipeline into a fresh data directory.
Random weights run at exactly the speed of trained ones; no model hub is needed.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app.bootstrap import build_services
from app.core.config import Settings
from app.demo.sample_catalogue import write_catalogue
from embeddings import load_embedder
from embeddings.loader import load_image

sys.path.insert(0, str(Path(__file__).parent))
from benchtools import machine, on_a_passing_thread

SIZES = (480, 640, 800, 1200)


def build_catalogue(directory: Path, images: int) -> Path:
    manifest = directory / "manifest.csv"
    if manifest.exists() and len(manifest.read_text().splitlines()) - 1 >= images:
        return manifest
    factories = max(1, images // 21)  # 13 products per factory, 21 photos on average (some have one view)
    manifest = write_catalogue(directory, factories=factories, products_per_factory=13, size=640, seed=11)
    for number, path in enumerate(sorted((directory / "images").glob("*.jpg"))):
        size = 3000 if number % 20 == 0 else SIZES[number % len(SIZES)]
        with Image.open(path) as image:
            image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(path, quality=90)
    return manifest


def image_paths(manifest: Path) -> list[Path]:
    return sorted((manifest.parent / "images").glob("*.jpg"))


def bare_model_rate(spec: str, precision: str, paths: list[Path], batch: int) -> tuple[float, object]:
    embedder = load_embedder(spec, precision=precision, batch_size=batch)
    pixels = np.stack([embedder.preprocess(_decode(path)) for path in paths])
    embedder.embed_pixels(pixels[:batch])  # warm-up: oneDNN builds its kernels on first use
    started = time.perf_counter()
    embedder.embed_pixels(pixels)
    return len(pixels) / (time.perf_counter() - started), embedder


def plain_fp32_rate(arch: str, paths: list[Path], batch: int) -> float:
    import open_clip

    model, _, transform = open_clip.create_model_and_transforms(arch, pretrained=None)
    model.eval()
    with torch.inference_mode():
        model.encode_image(torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[:batch]]))
        started = time.perf_counter()
        for start in range(0, len(paths), batch):
            tensors = [transform(Image.open(p).convert("RGB")) for p in paths[start : start + batch]]
            model.encode_image(torch.stack(tensors))
    return len(paths) / (time.perf_counter() - started)


def _decode(path: Path) -> Image.Image:
    return load_image(path.read_bytes(), max_bytes=1 << 30, max_pixels=1 << 30).image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--model", default="openclip:ViT-B-32:random")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sample", type=int, default=256, help="images in the bare and plain loops")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "sourcelens-bench-ingest")
    args = parser.parse_args()

    manifest = build_catalogue(args.workdir / "catalogue", args.images)
    paths = image_paths(manifest)
    sample = paths[:: max(1, len(paths) // args.sample)][: args.sample]
    bare, embedder = on_a_passing_thread(lambda: bare_model_rate(args.model, args.precision, sample, args.batch))
    # The plain loop is open_clip's own: for another model (effnet-lite0) there is none to compare with.
    arch = args.model.split(":")[1]
    plain = (
        on_a_passing_thread(lambda: plain_fp32_rate(arch, sample[:128], args.batch))
        if args.model.startswith("openclip:")
        else 0
    )

    data_dir = Path(tempfile.mkdtemp(prefix="run-", dir=args.workdir))
    settings = Settings(data_dir=data_dir, model=args.model, precision=args.precision, embed_batch_size=args.batch)
    services = build_services(settings, embedder)
    started = time.perf_counter()
    report = services.ingest.ingest_manifest(manifest)
    ingest = report.added / (time.perf_counter() - started)
    services.close()

    stages = " ".join(f"{name}={seconds:.0f}s" for name, seconds in report.stage_seconds.items())
    cosine = f"{embedder.bf16_cosine:.5f}" if embedder.bf16_cosine else "n/a"
    print(
        f"bench_ingest: {report.added} images ({report.failed} failed) model={args.model} {embedder.precision} "
        f"(bf16 cosine to fp32 {cosine}) | ingest {ingest:.1f} img/s | bare model loop {bare:.1f} img/s | "
        f"ratio {ingest / bare:.2f} | "
        + (f"plain fp32 open_clip loop {plain:.1f} img/s | speedup {ingest / plain:.2f}x | " if plain else "")
        + f"stages {stages} | {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    main()
