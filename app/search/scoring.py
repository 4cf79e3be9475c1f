"""From nearest catalogue images to ranked factories.

Each product counts once, with its best image. Its score is the query's cosine similarity to that image,
plus IDENTICAL_BONUS when local features show it is the same photo (verify.py), since a
verified copy is stronger evidence than any similarity, and up to FIT_BONUS more the closer the whole-product
comparison fits (nothing differs: all of it; at a threshold's limit: none). Real catalogues hold siblings drawn
the same but for a detail (another skin tone, a gender sign), and the copy and its sibling both pass as
identical at similarities a few thousandths apart; what tells them apart is how much of the sibling differs.

A factory's score is the score of its best-matching product, plus a small bonus for each further
product of it that also matches closely:

    score = p1 + SUPPORT_WEIGHT * sum(max(0, p_j - (p1 - SUPPORT_MARGIN)) for j = 2..1+MAX_SUPPORT)

where p1 >= p2 >= ... are the factory's product scores. Only products within SUPPORT_MARGIN of the best
one add anything, so a factory that makes several lookalikes ranks above one with a single equally good
match, but a crowd of mediocre matches can never outrank one clearly better match: the bonus is at most
SUPPORT_WEIGHT * MAX_SUPPORT * SUPPORT_MARGIN.
"""

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from app.search import verify
from app.search.compare import Comparison
from app.search.verify import Verification

SUPPORT_WEIGHT = 0.25
SUPPORT_MARGIN = 0.08
MAX_SUPPORT = 4
MAX_MATCHES_SHOWN = 5
# A factory's weaker products are shown as evidence only when close to its best match.
SHOW_MARGIN = 0.15
IDENTICAL_BONUS = 0.1
# On OpenMoji (scripts/evaluate.py, the tuning catalogue), 25 of 400 copies were answered with a sibling that
# also passed as identical; ranked by fit as well, 14 of them name the right product.
FIT_BONUS = 0.1
# Similarity above which a hit is a near-duplicate on its own, by embedder. effnet-lite0 was calibrated with
# scripts/evaluate.py (see docs/ranking.md); CLIP's value is the usual near-duplicate cut for
# ViT-B-32 image-image cosine, not calibrated here (no hub weights offline): run the harness and set
# SOURCELENS_NEAR_DUPLICATE_SIMILARITY. Other models never claim near-duplicates by similarity alone.
NEAR_DUPLICATE_DEFAULTS = {"effnet-lite0": 0.95, "openclip:ViT-B-32": 0.92}


def default_near_duplicate(embedder_name: str) -> float:
    value = measured_for(NEAR_DUPLICATE_DEFAULTS, embedder_name)
    return 1.01 if value is None else value


def measured_for(values: Mapping[str, float], embedder_name: str) -> float | None:
    """A model's value in a table of values measured per model (by name prefix); None for a model not in it, and
    for untrained weights, whose similarities mean nothing."""
    if embedder_name.endswith(":random"):
        return None
    return next((value for prefix, value in values.items() if embedder_name.startswith(prefix)), None)


class MatchLevel(StrEnum):
    IDENTICAL = "identical"  # the same product, possibly cropped, resized, mirrored, re-coloured or framed
    NEAR_DUPLICATE = "near_duplicate"  # similarity above the model's calibrated near-duplicate threshold
    SHARES_PART = "shares_part"  # corresponds in part (a frame, a shape, a template), differs in the rest
    SIMILAR = "similar"  # looks alike; not a confident match on its own


CONFIDENT = (MatchLevel.IDENTICAL, MatchLevel.NEAR_DUPLICATE)


@dataclass(frozen=True)
class Thresholds:
    """What each match level requires: shipped defaults, or fitted on a catalogue by `sourcelens calibrate`."""

    near_duplicate: float  # similarity above which an unaligned hit is a near-duplicate
    max_region: float = verify.MAX_REGION  # identical: largest differing region, share of the products' pixels
    max_different: float = verify.MAX_DIFFERENT  # identical: share of the products' pixels that may differ
    max_strokes: float = verify.MAX_STROKES  # identical: share of either image's edges the other may lack
    min_visible: float = verify.MIN_VISIBLE  # identical: share of the catalogue product the query must show
    max_occluded: float = verify.MAX_OCCLUDED  # identical: share of the image a banner or badge may cover
    source: str = "default"  # "default", or where the calibration came from

    def mismatch(self, compared: Comparison) -> float:
        """How close an identical pair came to the thresholds' limits: 0 where nothing differs, 1 at a limit."""
        shares = (
            compared.largest / max(self.max_region, 1e-9),
            compared.different / max(self.max_different, 1e-9),
            compared.strokes / max(self.max_strokes, 1e-9),
        )
        return min(1.0, max(shares))

    def level(self, similarity: float, verification: Verification | None) -> MatchLevel:
        if verification is not None and verification.aligned:
            compared = verification.comparison
            whole = compared.visible >= self.min_visible and compared.occluded <= self.max_occluded
            same = compared.largest <= self.max_region and compared.different <= self.max_different
            if whole and same and compared.strokes <= self.max_strokes:
                return MatchLevel.IDENTICAL
            # Aligned, yet not the same throughout: a shared part, never a near-duplicate by similarity.
            return MatchLevel.SHARES_PART
        if similarity >= self.near_duplicate:
            return MatchLevel.NEAR_DUPLICATE
        return MatchLevel.SIMILAR


@dataclass(frozen=True)
class Hit:
    image_id: int
    product_id: str
    factory_id: str
    similarity: float
    score: float | None = None  # the ranking score; the similarity until evidence adjusts it
    level: MatchLevel = MatchLevel.SIMILAR
    verification: Verification | None = None

    @property
    def rank_score(self) -> float:
        return self.similarity if self.score is None else self.score

    @property
    def confident(self) -> bool:
        return self.level in CONFIDENT


@dataclass
class FactoryScore:
    factory_id: str
    score: float
    matches: list[Hit] = field(default_factory=list)  # best image per product, best first

    @property
    def confident(self) -> bool:
        return bool(self.matches) and self.matches[0].confident


def with_evidence(hit: Hit, verification: Verification | None, thresholds: Thresholds) -> Hit:
    """The hit's match level and score, from its verification (if it had one) and its similarity."""
    level = thresholds.level(hit.similarity, verification)
    if level == MatchLevel.SIMILAR and verification is None and hit.score is None:
        return hit  # already an unverified similar hit; most of the pool is, and a copy costs 10 µs
    score = hit.similarity
    if level == MatchLevel.IDENTICAL and verification is not None:
        score += IDENTICAL_BONUS + FIT_BONUS * (1.0 - thresholds.mismatch(verification.comparison))
    return replace(hit, score=score, level=level, verification=verification)


def best_per_product(hits: list[Hit]) -> list[Hit]:
    best: dict[str, Hit] = {}
    for hit in hits:
        if (current := best.get(hit.product_id)) is None or hit.rank_score > current.rank_score:
            best[hit.product_id] = hit
    return sorted(best.values(), key=lambda h: (-h.rank_score, h.product_id))


def rank_factories(hits: list[Hit]) -> list[FactoryScore]:
    """Factories best first (ties by id), each with its products best first."""
    by_factory: dict[str, list[Hit]] = defaultdict(list)
    for hit in best_per_product(hits):
        by_factory[hit.factory_id].append(hit)
    ranked = [_score(factory_id, products) for factory_id, products in by_factory.items()]
    ranked.sort(key=lambda f: (-f.score, f.factory_id))
    return ranked


def _score(factory_id: str, product_hits: list[Hit]) -> FactoryScore:
    best = product_hits[0].rank_score  # product_hits come best first
    floor = best - SUPPORT_MARGIN
    support = sum(max(0.0, h.rank_score - floor) for h in product_hits[1 : 1 + MAX_SUPPORT])
    shown = [h for h in product_hits[:MAX_MATCHES_SHOWN] if h.rank_score >= best - SHOW_MARGIN]
    return FactoryScore(factory_id, best + SUPPORT_WEIGHT * support, shown)
