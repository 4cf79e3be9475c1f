"""Search quality on competitor-style queries built from a catalogue; prints a table per transform.

    python scripts/evaluate.py MANIFEST.csv [--model effnet-lite0] [--queries 200] [--seed 0]
    python scripts/evaluate.py --sample 100x20 [--model effnet-lite0]   # draws the synthetic catalogue first

Any manifest in the ingest format works. A few products (--holdout) are left out of the index; their photos
measure how often "no confident match" is answered for a product the catalogue does not have. The
catalogue is ingested once into --data-dir (default: a directory beside this run in /tmp), then reused.
"""

import argparse
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
from app.demo.evaluation import TRANSFORMS, Evaluation, Searcher, catalogue_queries, evaluate, split_manifest
from app.demo.sample_catalogue import write_catalogue
from embeddings import Embedder


def main() -> int:
    args = parse_args()
    manifest = args.manifest or sample_manifest(args.sample)
    key = hashlib.sha1(f"{manifest.resolve()}:{args.model}:{args.holdout}:{args.seed}".encode()).hexdigest()[:10]
    data_dir = args.data_dir or Path(tempfile.gettempdir()) / f"sourcelens-eval-{key}"
    indexed, unrelated = split_manifest(manifest, data_dir / "indexed.csv", args.holdout, args.seed)
    settings = Settings(data_dir=data_dir, model=args.model, embed_batch_size=32)
    services = build_services(settings)
    try:
        if not len(services.index):  # a data directory from an earlier run is reused as it is
            print(f"catalogue: {services.ingest.ingest_manifest(indexed).summary()}", file=sys.stderr)
        print(f"index: {len(services.index)} images, {services.index.describe()}", file=sys.stderr)
        queries = catalogue_queries(indexed, args.queries, args.seed)
        result = evaluate(Searcher(services.search, services.sessions), queries, unrelated, args.transforms, args.seed)
    finally:
        services.close()
    print_report(result, services.model, len(queries), len(unrelated))
    return 0


def sample_manifest(spec: str) -> Path:
    factories, products = (int(part) for part in spec.lower().split("x"))
    directory = Path(tempfile.gettempdir()) / f"sourcelens-sample-{factories}x{products}"
    manifest = directory / "manifest.csv"
    if not manifest.exists():
        print(f"drawing {factories} factories x {products} products into {directory}", file=sys.stderr)
        write_catalogue(directory, factories=factories, products_per_factory=products, seed=23)
    return manifest


def print_report(result: Evaluation, model: Embedder, queries: int, held: int) -> None:
    print(f"model {model.name} ({model.precision}); {queries} products queried per transform")
    header = ("transform", "queries", "factory top-1", "factory R@5", "image R@10", "confident")
    print("{:<12} {:>7} {:>13} {:>11} {:>10} {:>9}".format(*header))
    for name, count, top1, recall5, image10, confident in result.rows():
        print(f"{name:<12} {count:>7} {top1:>13.3f} {recall5:>11.3f} {image10:>10.3f} {confident:>9.3f}")
    wrongly = sum(o.confident for o in result.unrelated) / max(len(result.unrelated), 1)
    print(f"held-out products (not in the index): {held} queries, answered confidently {wrongly:.3f}")
    true_sims = np.array([o.top_similarity for v in result.by_transform.values() for o in v])
    held_sims = np.array([o.top_similarity for o in result.unrelated])
    if len(held_sims):
        print(
            "top similarity: catalogue queries p5 {:.3f} p50 {:.3f}; held-out p50 {:.3f} p95 {:.3f} max {:.3f}".format(
                *np.percentile(true_sims, [5, 50]), *np.percentile(held_sims, [50, 95]), held_sims.max()
            )
        )
    latency = result.latencies()
    print(
        f"latency per search: p50 {np.percentile(latency, 50):.1f} ms, p95 {np.percentile(latency, 95):.1f} ms "
        f"({usable_cores()} cores, {platform.processor() or platform.machine()})"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path, nargs="?", help="a catalogue manifest in the ingest format")
    parser.add_argument("--sample", default="100x20", help="without a manifest: FACTORIESxPRODUCTS to draw")
    parser.add_argument("--model", default="effnet-lite0")
    parser.add_argument("--queries", type=int, default=200, help="products queried per transform")
    parser.add_argument("--holdout", type=int, default=50, help="products left out of the index")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transforms", nargs="+", default=list(TRANSFORMS), choices=list(TRANSFORMS))
    parser.add_argument("--data-dir", type=Path)
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(main())
