"""Category prediction: the nearest products vote by closeness, the text tower blends in where there is one."""

import numpy as np
import pytest

from app.search.categories import SHOWN, blend, neighbour_vote, text_match
from app.search.scoring import Hit


def hit(product: str, similarity: float, image: int = 0) -> Hit:
    return Hit(image or hash(product) % 10_000, product, "F", similarity)


def test_the_nearest_products_decide_and_each_product_votes_once():
    hits = [hit("mug1", 0.95), hit("mug1", 0.94, 2), hit("cup1", 0.90), hit("cup2", 0.89), hit("vase", 0.70)]
    categories = {"mug1": "mug", "cup1": "cup", "cup2": "cup", "vase": "vase"}
    vote = neighbour_vote(hits, categories)
    assert pytest.approx(sum(vote.values())) == 1.0
    # 0.05 closer weighs e^(0.05/0.03) ≈ 5.3 times more than a cup: one close mug beats two further cups.
    assert vote["mug"] > vote["cup"] > vote["vase"]
    weights = 1 + np.exp(-0.05 / 0.03) + np.exp(-0.06 / 0.03) + np.exp(-0.25 / 0.03)
    assert vote["mug"] == pytest.approx(1 / weights, rel=1e-3)


def test_products_without_a_category_do_not_vote_and_nothing_known_means_no_guess():
    assert neighbour_vote([hit("a", 0.9), hit("b", 0.8)], {"a": None, "b": "bag"}) == {"bag": 1.0}
    assert neighbour_vote([hit("a", 0.9)], {"a": None}) == {}
    assert neighbour_vote([], {}) == {} and blend({}, {}) == []


def test_the_text_tower_reads_category_names_and_blends_half_and_half():
    names = ["bag", "mug"]
    vectors = {"bag": np.array([1.0, 0.0]), "mug": np.array([0.0, 1.0])}
    text = text_match(np.array([0.0, 1.0]), names, lambda name: vectors[name])
    assert text["mug"] > 0.99  # a softmax at CLIP's scale: a clear winner
    guesses = blend({"bag": 0.8, "mug": 0.2}, text)
    assert [g.category for g in guesses] == ["mug", "bag"] and guesses[0].confidence == pytest.approx(0.6, abs=0.01)
    assert text_match(np.array([1.0, 0.0]), [], lambda name: vectors[name]) == {}


def test_at_most_three_guesses_most_likely_first():
    guesses = blend({"a": 0.1, "b": 0.4, "c": 0.3, "d": 0.2}, {})
    assert [g.category for g in guesses] == ["b", "c", "d"] and len(guesses) == SHOWN
