"""The evaluation harness: its competitor-style transforms and its split of a catalogue."""

import random

import pytest
from PIL import Image, ImageDraw, ImageOps

from app.demo.evaluation import (
    TRANSFORMS,
    Evaluation,
    Outcome,
    Query,
    catalogue_queries,
    competitor_photo,
    split_manifest,
    twins,
)
from app.demo.sample_catalogue import Design, factory_palette, render_product
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


def test_twins_are_unknown_products_drawn_as_a_catalogue_product_or_its_mirror(tmp_path):
    shelf = [render_product(Design(seed=s, palette=factory_palette(s % 5)), size=200) for s in range(1, 7)]
    recoloured = shelf[2].copy()
    ImageDraw.Draw(recoloured).ellipse((60, 60, 110, 110), fill=(20, 160, 60))  # a part in another colour
    photos = {"same": shelf[0], "mirror": ImageOps.mirror(shelf[1]), "recoloured": recoloured, "other": shelf[5]}

    def saved(name: str, image: Image.Image) -> Query:
        image.save(tmp_path / f"{name}.png")
        return Query(name, "F", tmp_path / f"{name}.png")

    catalogue = [saved(f"P{i}", image) for i, image in enumerate(shelf[:5])]
    unknown = [saved(name, image) for name, image in photos.items()]
    assert twins(unknown, catalogue) == {"same": "P0", "mirror": "P1"}
    assert twins([], catalogue) == {} and twins(unknown, []) == {}


def test_copy_twins_are_catalogue_products_drawn_as_another_factorys_product(tmp_path):
    shelf = [render_product(Design(seed=s, palette=factory_palette(s % 5)), size=200) for s in range(1, 5)]

    def saved(name: str, factory: str, image: Image.Image) -> Query:
        image.save(tmp_path / f"{name}.png")
        return Query(name, factory, tmp_path / f"{name}.png")

    catalogue = [
        saved("A", "F1", shelf[0]),
        saved("A-elsewhere", "F2", shelf[0]),  # another factory lists the same drawing
        saved("B", "F1", shelf[1]),
        saved("B-sibling", "F1", shelf[1]),  # the same factory's: a copy still names the right factory
        saved("C", "F1", shelf[2]),
        saved("C-mirrored", "F3", ImageOps.mirror(shelf[2])),
        saved("D", "F2", shelf[3]),
    ]
    found = twins(catalogue, catalogue, other_factories=True)
    assert found == {"A": "A-elsewhere", "A-elsewhere": "A", "C": "C-mirrored", "C-mirrored": "C"}
    assert twins(catalogue[:1], catalogue)["A"] in {"A", "A-elsewhere"}  # without: itself counts


def test_figures_without_twins_leave_out_only_the_twins_queries():
    def outcome(product: str, right: bool, confident: bool) -> Outcome:
        return Outcome(
            default_top1=right and confident, weak_top1=right, recall5=True, image_recall10=True,
            confident=confident, confident_wrong=confident and not right, level="identical" if confident else "none",
            top_similarity=0.9, latency_ms=1.0, product_id=product,
        )  # fmt: skip

    result = Evaluation(
        by_transform={"mirror": [outcome("A", False, True), outcome("B", True, True), outcome("C", False, False)]},
        unknown=[outcome("U", False, True), outcome("V", False, False)],
        twins={"U": "A"},
        copy_twins={"A": "A-elsewhere"},
    )
    assert result.without_copy_twins() == (2, 0.5, 0.0)
    assert result.unknown_confident() == 0.5 and result.unknown_confident(without_twins=True) == 0.0
