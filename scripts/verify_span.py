"""How far below the best candidate a model's copies sit: the measurement behind evidence.VERIFY_SPANS.

    python scripts/verify_span.py --catalogue openmoji              # how effnet-lite0's 0.1 was chosen
    python scripts/verify_span.py --catalogue openmoji --model M    # before adding a span for model M

Runs evaluate.py's queries (every transform of catalogue photos, and products the catalogue lacks) with every
candidate verified, as calibration does, and reports: for each copy proven identical, how far its similarity is
below the search's best candidate; and, for each span tried, how many copies it would miss and how many
candidates a search of an unknown product would still check. A span should miss none. Takes evaluate.py's
options (catalogue, model, queries, transforms, data directory); ingests once into the same directory.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluate import data_dir_for, parse_args, prepare

from app.bootstrap import build_services
from app.calibration.transforms import competitor_photo
from app.core.config import Settings
from app.demo.evaluation import Query, catalogue_queries
from app.search.evidence import VERIFY_TOP
from app.search.options import QueryPhoto, SearchOptions
from app.search.pipeline import SearchService
from app.search.scoring import MatchLevel

SPANS = (0.05, 0.08, 0.1, 0.15, 0.2)


def gaps(search: SearchService, query: Query, transform: str, seed: int) -> tuple[list[float], float | None]:
    """Each candidate's distance below the best one, and the first identical copy's (None if none was proven)."""
    photo = QueryPhoto(competitor_photo(query.image, transform, seed))
    result = search.run([photo], None, SearchOptions(include_weak=True, verify_all=True))
    if not result.evidence:
        return [], None
    best = max(hit.similarity for hit in result.evidence)
    below = [best - hit.similarity for hit in result.evidence]
    copies = [
        gap
        for gap, hit in zip(below, result.evidence, strict=True)
        if hit.level == MatchLevel.IDENTICAL and hit.product_id == query.product_id
    ]
    return below, min(copies, default=None)


def main() -> int:
    args = parse_args()
    for catalogue in args.catalogue or ["openmoji"]:
        manifest, unknown = prepare(catalogue, args)
        settings = Settings(data_dir=data_dir_for(manifest, args), model=args.model)
        services = build_services(settings)
        try:
            if not len(services.index):
                print(f"catalogue: {services.ingest.ingest_manifest(manifest).summary()}", file=sys.stderr)
            queries = catalogue_queries(manifest, args.queries, args.seed)
            copies = [
                gaps(services.search, query, transform, args.seed)[1]
                for transform in args.transforms
                for query in queries
            ]
            found = np.array([gap for gap in copies if gap is not None])
            lacking = [
                gaps(services.search, query, args.transforms[i % len(args.transforms)], args.seed)[0]
                for i, query in enumerate(unknown)
            ]
        finally:
            services.close()
        print(report(catalogue, args.model, found, len(copies), lacking))
    return 0


def report(catalogue: str, model: str, found: np.ndarray, queried: int, lacking: list[list[float]]) -> str:
    lines = [f"verify_span: {catalogue}, model {model}: {len(found)} of {queried} copies proven identical"]
    if len(found):
        p99, worst = np.quantile(found, 0.99), found.max()
        lines.append(f"  below the best candidate: 99% within {p99:.3f}, all within {worst:.3f}")
    for span in SPANS:
        missed = int((found > span).sum())
        checked = np.mean([sum(gap <= span for gap in below[:VERIFY_TOP]) for below in lacking]) if lacking else 0
        lines.append(f"  span {span:.2f}: copies missed {missed}, unknown products check {checked:.1f} of {VERIFY_TOP}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
