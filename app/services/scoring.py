"""From nearest catalogue images to ranked factories.

A factory's score is the similarity of its best-matching product, plus a small bonus for each further
product of it that also matches closely:

    score = p1 + SUPPORT_WEIGHT * sum(max(0, p_j - (p1 - SUPPORT_MARGIN)) for j = 2..1+MAX_SUPPORT)

where p1 >= p2 >= ... are the factory's per-product best similarities (each product counts once, with
its best image). Only products within SUPPORT_MARGIN of the best one add anything, so a factory that
makes several lookalikes ranks above one with a single equally good match, but a crowd of mediocre
matches can never outrank one clearly better match: the bonus is at most
SUPPORT_WEIGHT * MAX_SUPPORT * SUPPORT_MARGIN.
"""

from collections import defaultdict
from dataclasses import dataclass, field

SUPPORT_WEIGHT = 0.25
SUPPORT_MARGIN = 0.08
MAX_SUPPORT = 4
MAX_MATCHES_SHOWN = 5
# A factory's weaker products are shown as evidence only when close to its best match.
SHOW_MARGIN = 0.15


@dataclass(frozen=True)
class Hit:
    image_id: int
    product_id: str
    factory_id: str
    similarity: float


@dataclass
class FactoryScore:
    factory_id: str
    score: float
    matches: list[Hit] = field(default_factory=list)  # best image per product, best first


def rank_factories(hits: list[Hit], top_k: int) -> list[FactoryScore]:
    by_factory: dict[str, dict[str, Hit]] = defaultdict(dict)
    for hit in hits:
        products = by_factory[hit.factory_id]
        best = products.get(hit.product_id)
        if best is None or hit.similarity > best.similarity:
            products[hit.product_id] = hit
    ranked = [_score(factory_id, list(products.values())) for factory_id, products in by_factory.items()]
    ranked.sort(key=lambda f: (-f.score, f.factory_id))
    return ranked[:top_k]


def _score(factory_id: str, product_hits: list[Hit]) -> FactoryScore:
    product_hits.sort(key=lambda h: -h.similarity)
    best = product_hits[0].similarity
    floor = best - SUPPORT_MARGIN
    support = sum(max(0.0, h.similarity - floor) for h in product_hits[1 : 1 + MAX_SUPPORT])
    shown = [h for h in product_hits[:MAX_MATCHES_SHOWN] if h.similarity >= best - SHOW_MARGIN]
    return FactoryScore(factory_id, best + SUPPORT_WEIGHT * support, shown)
