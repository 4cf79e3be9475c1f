"""Search quality on competitor-style queries built from a catalogue, as a seller sees it.

    python scripts/evaluate.py                           # the evaluation catalogues: sample and twemoji
    python scripts/evaluate.py --catalogue openmoji      # the set thresholds are tuned on
    python scripts/evaluate.py --catalogue MANIFEST.csv  # any catalogue in the ingest format
    python scripts/evaluate.py --details /tmp/eval.csv   # and one row per query: the answer, its evidence

Catalogues: `sample` is the synthetic one drawn by code (100 factories x 20 products; 50 products held out as
unknown); `twemoji` and `openmoji` are real emoji artwork full of near-misses (2,500 images as products of 185
factories, 200 more as unknown products; app/demo/emoji_catalogue.py, `pip install -e '.[eval]'`). A manifest
of your own has --holdout products left out as unknown. Each catalogue is ingested once into a directory in
/tmp (or --data-dir), then reused. Prints one table per catalogue (docs/ranking.md explains the figures).
"""

import argparse
import csv
import hashlib
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.bootstrap import build_services
from app.core.config import Settings
from app.core.cores import usable_cores
from app.demo.emoji_catalogue import SETS, write_emoji_catalogue
from app.demo.evaluation import (
    TRANSFORMS,
    Evaluation,
    Query,
    Searcher,
    catalogue_queries,
    evaluate,
    read_queries,
    split_manifest,
    twins,
)
from app.demo.sample_catalogue import write_catalogue

TMP = Path(tempfile.gettempdir())


def main() -> int:
    args = parse_args()
    for catalogue in args.catalogue or ["sample", "twemoji"]:
        manifest, unknown = prepare(catalogue, args)
        run(catalogue, manifest, unknown, args)
    return 0


def prepare(catalogue: str, args: argparse.Namespace) -> tuple[Path, list[Query]]:
    """The manifest to index (image paths absolute) and the unknown products' photos."""
    if catalogue in SETS:
        emoji = write_emoji_catalogue(
            TMP / f"sourcelens-{catalogue}-{args.images}x{args.factories}",
            catalogue,
            images=args.images,
            factories=args.factories,
            unknown=args.unknown,
        )
        indexed, _ = split_manifest(emoji.manifest, emoji.manifest.with_name("indexed.csv"), 0, args.seed)
        return indexed, read_queries(emoji.unknown)
    manifest = sample_manifest("100x20") if catalogue == "sample" else Path(catalogue)
    return split_manifest(manifest, manifest.with_name(f"indexed-{args.holdout}.csv"), args.holdout, args.seed)


def run(catalogue: str, manifest: Path, unknown: list[Query], args: argparse.Namespace) -> None:
    data_dir = data_dir_for(manifest, args)
    settings = Settings(data_dir=data_dir, model=args.model, embed_batch_size=32)
    services = build_services(settings)
    try:
        # A data directory from an earlier run is reused; one whose ingest was cut short is completed first.
        if len(services.index) < manifest_rows(manifest):
            print(f"catalogue: {services.ingest.ingest_manifest(manifest).summary()}", file=sys.stderr)
        queries = catalogue_queries(manifest, args.queries, args.seed)
        searcher = Searcher(services.search, services.sessions)
        result = evaluate(searcher, queries, unknown, args.transforms, args.seed)
        catalogue_products = read_queries(manifest)
        result.twins = twins(unknown, catalogue_products)
        result.copy_twins = twins(queries, catalogue_products, other_factories=True)
        print(
            f"\n## {catalogue}: {len(services.index)} images, model {services.model.name} "
            f"({services.model.precision}), index {services.index.describe()}"
        )
    finally:
        services.close()
    print_report(result)
    if args.details:
        write_details(args.details.with_suffix(f".{Path(catalogue).stem}.csv"), result)


def manifest_rows(manifest: Path) -> int:
    with manifest.open(newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def write_details(path: Path, result: Evaluation) -> None:
    """One row per query: what it was, what the search answered, and the query's own product's evidence."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "kind", "default_top1", "weak_top1", "confident_wrong", "answer", "runner_up", "own"])
        kinds = [(o, "copy twin" if o.product_id in result.copy_twins else "copy") for o in result.known]
        kinds += [(o, "unknown twin" if o.product_id in result.twins else "unknown") for o in result.unknown]
        for o, kind in kinds:
            query = f"{o.product_id} {o.transform}"
            writer.writerow([query, kind, o.default_top1, o.weak_top1, o.confident_wrong, o.answer, o.runner_up, o.own])
    print(f"per-query details: {path}", file=sys.stderr)


def data_dir_for(manifest: Path, args: argparse.Namespace) -> Path:
    """Where a catalogue is ingested for a model: --data-dir, or one directory in /tmp per catalogue and model,
    reused by later runs (and by scripts/verify_span.py)."""
    key = hashlib.sha1(f"{manifest.resolve()}:{args.model}".encode()).hexdigest()[:10]
    return args.data_dir or TMP / f"sourcelens-eval-{key}"


def sample_manifest(spec: str) -> Path:
    factories, products = (int(part) for part in spec.lower().split("x"))
    directory = TMP / f"sourcelens-sample-{factories}x{products}"
    manifest = directory / "manifest.csv"
    if not manifest.exists():
        print(f"drawing {factories} factories x {products} products into {directory}", file=sys.stderr)
        write_catalogue(directory, factories=factories, products_per_factory=products, seed=23)
    return manifest


def print_report(result: Evaluation) -> None:
    header = ("transform", "queries", "default top-1", "weak top-1", "R@5", "image R@10", "confident wrong")
    print("{:<11} {:>7} {:>13} {:>10} {:>6} {:>10} {:>15}".format(*header))
    for name, count, top1, weak, recall5, image10, wrong in result.rows():
        print(f"{name:<11} {count:>7} {top1:>13.3f} {weak:>10.3f} {recall5:>6.3f} {image10:>10.3f} {wrong:>15.3f}")
    confident = result.unknown_confident()
    levels = ", ".join(f"{count} {level}" for level, count in sorted(result.unknown_levels().items())) or "none"
    print(f"unknown products: {len(result.unknown)} queries, answered confidently {confident:.3f} ({levels})")
    print(
        f"unknown products drawn as a catalogue product is, or as its mirror: {len(result.twins)}; "
        f"without them, answered confidently {result.unknown_confident(without_twins=True):.3f}"
    )
    judged, top1, wrong = result.without_copy_twins()
    print(
        f"copies of products drawn as another factory's product is, or as its mirror: {len(result.known) - judged} "
        f"of {len(result.known)}; without them, default top-1 {top1:.3f}, confident wrong {wrong:.3f}"
    )
    print(
        "reliability (top similarity band: answers, share naming the right factory): "
        + "; ".join(f"{low:.2f}-{high:.2f}: {n}, {right:.2f}" for low, high, n, right in result.reliability())
    )
    copies, unknown = result.category_top1(result.known), result.category_top1(result.unknown)
    if copies is not None:
        print(f"likeliest category right: copies {copies:.3f}, unknown products {unknown or 0:.3f}")
    latency = result.latencies()
    print(
        f"latency per search: p50 {np.percentile(latency, 50):.1f} ms, p95 {np.percentile(latency, 95):.1f} ms "
        f"({usable_cores()} cores, {platform.processor() or platform.machine()})"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalogue", action="append", help="sample, twemoji, openmoji or a manifest (repeatable)")
    parser.add_argument("--model", default="effnet-lite0")
    parser.add_argument("--queries", type=int, default=50, help="products queried per transform")
    parser.add_argument("--holdout", type=int, default=50, help="products of a manifest left out as unknown")
    parser.add_argument("--images", type=int, default=2500, help="emoji catalogues: images in the catalogue")
    parser.add_argument("--factories", type=int, default=185, help="emoji catalogues: factories")
    parser.add_argument("--unknown", type=int, default=200, help="emoji catalogues: unknown products")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transforms", nargs="+", default=list(TRANSFORMS), choices=list(TRANSFORMS))
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--details", type=Path, help="write one CSV row per query to DETAILS.<catalogue>.csv")
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(main())
