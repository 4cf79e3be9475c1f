"""The evaluation harness: its competitor-style transforms and its split of a catalogue."""

import random

import pytest
from PIL import Image

from app.demo.evaluation import TRANSFORMS, catalogue_queries, competitor_photo, split_manifest
from embeddings.loader import load_image


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transforms_are_deterministic_and_change_the_photo(catalogue, name):
    path = catalogue.parent / "images" / "F001-P001-1.jpg"
    first, again = competitor_photo(path, name, seed=3), competitor_photo(path, name, seed=3)
    assert first == again
    decoded = load_image(first, max_bytes=10**7, max_pixels=10**8, max_side=None).image
    original = Image.open(path).convert("RGB")
    assert decoded.size != original.size or decoded.tobytes() != original.tobytes()
    assert TRANSFORMS[name](original, random.Random(1)).mode == "RGB"


def test_split_holds_products_out_of_the_index(catalogue, tmp_path):
    indexed, held = split_manifest(catalogue, tmp_path / "indexed.csv", holdout=5, seed=0)
    held_products = {q.product_id for q in held}
    assert len(held_products) == 1  # at most a tenth of the 16 products
    kept = catalogue_queries(indexed, count=100, seed=0)
    assert len(kept) == 15 and not held_products & {q.product_id for q in kept}
    assert all(q.image.is_absolute() and q.image.exists() for q in kept)
