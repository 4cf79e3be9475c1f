"""From FAISS's rows to one hit per product: each image's best similarity over a view's crops, then products
fused over the views by the mean, so a product that matches every view beats one that matches a single view."""

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from app.search.scoring import Hit, best_per_product

MISSING = -2.0  # below any cosine similarity


class ImageRef(NamedTuple):
    """What ranking and verification need of a catalogue image."""

    id: int
    product_id: str
    content_hash: str
    factory_id: str
    category: str | None = None  # the product's, for the photo's likely categories (categories.py)


def best_per_image(rows: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[int, float]:
    """Over one view's crops, each image's best similarity; FAISS's empty slots (id -1) are skipped."""
    best: dict[int, float] = {}
    for row_scores, row_ids in rows:
        # FAISS answers ids and scores of one shape, so zip's strict flag is equivalent either way
        for image_id, score in zip(row_ids.tolist(), row_scores.tolist(), strict=True):  # pragma: no mutate
            if image_id >= 0 and score > best.get(image_id, MISSING):
                best[image_id] = score
    return best


def fuse_views(per_view: list[dict[int, float]], rows: Iterable[ImageRef]) -> list[Hit]:
    """One hit per product: its best image, with the mean over views of the product's best similarity (a view
    where the product did not come up counts with that view's lowest similarity in the pool)."""
    floors = [min(view.values(), default=0.0) for view in per_view]
    product_sims: dict[str, list[float]] = {}
    product_image: dict[str, tuple[float, ImageRef]] = {}
    for row in rows:
        scores = [view.get(row.id, MISSING) for view in per_view]
        if (sims := product_sims.get(row.product_id)) is None:
            sims = product_sims[row.product_id] = list(floors)
        for v, score in enumerate(scores):
            if score > sims[v]:
                sims[v] = score
        top = max(scores, default=MISSING)
        if (best := product_image.get(row.product_id)) is None or top > best[0]:
            product_image[row.product_id] = (top, row)
    hits = []
    for product_id, sims in product_sims.items():
        row = product_image[product_id][1]
        hits.append(Hit(row.id, product_id, row.factory_id, sum(sims) / len(sims)))  # np.mean: 15 µs a call
    return best_per_product(hits)
