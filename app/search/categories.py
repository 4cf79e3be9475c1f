"""The photo's likely catalogue categories, with a confidence: a vote of its nearest catalogue products
(weighted by how close each is), and, where the model reads text, how well the photo matches each category's
name. Every answer carries them, confident match or not: "it is probably a mug" helps a seller even when no
factory in the catalogue makes this one.
"""

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from app.search.scoring import Hit

NEIGHBOURS = 20  # nearest products that vote
TEMPERATURE = 0.03  # similarity difference that weighs e times less: the nearest few decide
TEXT_WEIGHT = 0.5  # share of the text tower in the blend, where the model has one
TEXT_SCALE = 100.0  # CLIP's logit scale: cosine similarities into a softmax
MAX_TEXT_CATEGORIES = 300  # beyond this, names are not compared (a category list that long is not a taxonomy)
SHOWN = 3


@dataclass(frozen=True)
class CategoryGuess:
    category: str
    confidence: float  # 0..1; the guesses of one answer sum to at most 1


def neighbour_vote(hits: Sequence[Hit], categories: Mapping[str, str | None]) -> dict[str, float]:
    """Each of the nearest products (best image each) votes for its category, weighted by closeness."""
    best: dict[str, float] = {}
    for hit in hits:
        if hit.similarity > best.get(hit.product_id, -2.0):
            best[hit.product_id] = hit.similarity
    nearest = sorted(best.items(), key=lambda item: -item[1])[:NEIGHBOURS]
    votes: dict[str, float] = defaultdict(float)
    if not nearest:
        return {}
    top = nearest[0][1]
    for product_id, similarity in nearest:
        category = categories.get(product_id)
        if category:
            votes[category] += float(np.exp((similarity - top) / TEMPERATURE))
    total = sum(votes.values())
    return {category: weight / total for category, weight in votes.items()} if total else {}


def text_match(query: np.ndarray, names: Sequence[str], embed: Callable[[str], np.ndarray]) -> dict[str, float]:
    """A softmax over the cosine similarity of the photo to each category's name ("a photo of a mug")."""
    if not names or len(names) > MAX_TEXT_CATEGORIES:
        return {}
    vectors = np.stack([embed(name) for name in names])
    logits = TEXT_SCALE * (vectors @ query)
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    return {name: float(weight) for name, weight in zip(names, weights, strict=True)}


def blend(vote: Mapping[str, float], text: Mapping[str, float]) -> list[CategoryGuess]:
    if text:
        names = set(vote) | set(text)
        mixed = {n: (1 - TEXT_WEIGHT) * vote.get(n, 0.0) + TEXT_WEIGHT * text.get(n, 0.0) for n in names}
    else:
        mixed = dict(vote)
    ranked = sorted(mixed.items(), key=lambda item: (-item[1], item[0]))[:SHOWN]
    return [CategoryGuess(name, round(weight, 3)) for name, weight in ranked if weight > 0]
