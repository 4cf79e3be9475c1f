"""The scoring rule: products counted once, factories ranked by their best product with bounded support,
match levels from the evidence, near-duplicate thresholds by model."""

import pytest

from app.search.compare import Comparison
from app.search.scoring import (
    FIT_BONUS,
    IDENTICAL_BONUS,
    MAX_SUPPORT,
    SUPPORT_MARGIN,
    SUPPORT_WEIGHT,
    Hit,
    MatchLevel,
    Thresholds,
    default_near_duplicate,
    rank_factories,
    with_evidence,
)
from app.search.verify import Verification


def hit(factory: str, product: str, similarity: float, image: int = 0) -> Hit:
    return Hit(image, product, factory, similarity)


def test_factory_with_several_close_products_beats_single_equal_match():
    ranked = rank_factories([hit("A", "a1", 0.80), hit("B", "b1", 0.80), hit("B", "b2", 0.78), hit("B", "b3", 0.77)])
    assert [f.factory_id for f in ranked] == ["B", "A"]
    assert ranked[0].score == pytest.approx(0.80 + SUPPORT_WEIGHT * ((0.78 - 0.72) + (0.77 - 0.72)))


def test_crowd_of_mediocre_matches_never_beats_a_clearly_better_one():
    crowd = [hit("B", f"b{i}", 0.85) for i in range(30)]
    ranked = rank_factories([hit("A", "a1", 0.85 + SUPPORT_WEIGHT * MAX_SUPPORT * SUPPORT_MARGIN + 0.001), *crowd])
    assert ranked[0].factory_id == "A"


def test_each_product_counts_once_with_its_best_image():
    ranked = rank_factories([hit("A", "a1", 0.9, 1), hit("A", "a1", 0.88, 2), hit("A", "a1", 0.87, 3)])
    assert ranked[0].score == pytest.approx(0.9)
    assert [m.image_id for m in ranked[0].matches] == [1]


def test_near_duplicate_thresholds_by_model():
    assert default_near_duplicate("effnet-lite0") == 0.95
    assert default_near_duplicate("openclip:ViT-B-32:laion2b_s34b_b79k") == 0.92
    # Untrained weights and uncalibrated models never call a hit a near-duplicate by similarity alone.
    assert default_near_duplicate("openclip:ViT-B-32:random") > 1
    assert default_near_duplicate("openclip:ViT-L-14:openai") > 1


def verified(identical: bool, aligned: bool = True) -> Verification:
    """Evidence of a copy, of a pair aligned only in part (a sibling: the same template, another colour), or,
    with aligned=False, of a pair local features could not align."""
    compared = Comparison(0.0, 0.0, 1.0, 0.0, True, 0.0) if identical else Comparison(0.2, 0.1, 1.0, 0.0, True, 0.0)
    inliers = 40 if aligned else 5
    return Verification(inliers, inliers + 5, (0.1, 0.1, 0.9, 0.9), False, 0.99 if aligned else 0.2, compared)


def test_match_levels_from_the_evidence():
    cut = Thresholds(0.95)
    copy = with_evidence(hit("F", "p", 0.70), verified(True), cut)
    perfect = IDENTICAL_BONUS + FIT_BONUS  # nothing differs: the whole fit bonus
    assert (copy.level, copy.rank_score, copy.confident) == (MatchLevel.IDENTICAL, 0.70 + perfect, True)
    assert copy.verification is not None and copy.verification.identical
    at_cut = with_evidence(hit("F", "p", 0.95), None, cut)
    assert (at_cut.level, at_cut.rank_score, at_cut.confident) == (MatchLevel.NEAR_DUPLICATE, 0.95, True)
    below = with_evidence(hit("F", "p", 0.949), None, cut)
    assert (below.level, below.rank_score, below.confident) == (MatchLevel.SIMILAR, 0.949, False)
    unaligned = with_evidence(hit("F", "p", 0.8), verified(False, aligned=False), cut)  # its evidence is kept
    assert (unaligned.level, unaligned.verification) == (MatchLevel.SIMILAR, verified(False, aligned=False))
    near_and_unaligned = with_evidence(hit("F", "p", 0.97), verified(False, aligned=False), cut)
    assert near_and_unaligned.level == MatchLevel.NEAR_DUPLICATE
    # Aligned but different in a part: a shared part, whatever the similarity, and never confident.
    for similarity in (0.8, 0.99):
        sibling = with_evidence(hit("F", "p", similarity), verified(False), cut)
        assert (sibling.level, sibling.confident, sibling.rank_score) == (MatchLevel.SHARES_PART, False, similarity)
    regraded = with_evidence(copy, None, cut)
    assert (regraded.level, regraded.rank_score, regraded.verification) == (MatchLevel.SIMILAR, 0.70, None)


def test_a_factory_shows_its_close_products_best_first_at_most_five():
    hits = [hit("A", f"a{i}", 0.90 - i * 0.03) for i in range(7)]  # 0.90, 0.87, ..., 0.72
    (factory,) = rank_factories(hits)
    # Within 0.15 of the best (0.75 and up), at most five of them.
    assert [m.product_id for m in factory.matches] == ["a0", "a1", "a2", "a3", "a4"]
    (narrow,) = rank_factories([hit("A", "a0", 0.90), hit("A", "a1", 0.75), hit("A", "a2", 0.7499)])
    assert [m.product_id for m in narrow.matches] == ["a0", "a1"]
    assert narrow.confident is False  # its best match is merely similar


def test_support_counts_at_most_four_further_products():
    five = rank_factories([hit("A", f"a{i}", 0.8) for i in range(5)])[0].score
    six = rank_factories([hit("A", f"a{i}", 0.8) for i in range(6)])[0].score
    assert five == pytest.approx(0.8 + SUPPORT_WEIGHT * MAX_SUPPORT * SUPPORT_MARGIN) and six == pytest.approx(five)
    far = rank_factories([hit("A", "a0", 0.8), hit("A", "a1", 0.8 - SUPPORT_MARGIN)])[0].score
    assert far == pytest.approx(0.8)  # a product SUPPORT_MARGIN below the best adds nothing


def test_ties_rank_by_id_and_keep_the_first_image():
    ranked = rank_factories([hit("B", "b1", 0.8), hit("A", "a1", 0.8)])
    assert [f.factory_id for f in ranked] == ["A", "B"]
    (factory,) = rank_factories([hit("A", "a1", 0.8, image=7), hit("A", "a1", 0.8, image=3)])
    assert factory.matches[0].image_id == 7


def test_of_two_identical_siblings_the_one_that_fits_better_ranks_first():
    # A copy of the query, and its sibling drawn the same but for a detail (another skin tone) that passes as
    # identical near the limit of the differing-region rule, a hair more similar by the embedding.
    cut = Thresholds(0.95)
    exact = Verification(300, 320, (0.1, 0.1, 0.9, 0.9), False, 0.99, Comparison(0.002, 0.0015, 1.0, 0.0, True, 0.0))
    near_limit = Comparison(0.02, 0.9 * cut.max_region, 1.0, 0.0, True, 0.0)
    sibling = Verification(300, 320, (0.1, 0.1, 0.9, 0.9), False, 0.99, near_limit)
    hits = [with_evidence(hit("A", "copy", 0.920), exact, cut), with_evidence(hit("B", "sibling", 0.926), sibling, cut)]
    assert [h.level for h in hits] == [MatchLevel.IDENTICAL] * 2
    assert [f.factory_id for f in rank_factories(hits)] == ["A", "B"]
    assert hits[1].rank_score == pytest.approx(0.926 + IDENTICAL_BONUS + FIT_BONUS * 0.1)
    # The fit is measured against the thresholds in force: a catalogue's own, looser ones leave more room.
    loose = Thresholds(0.95, max_region=2 * cut.max_region)
    assert loose.mismatch(near_limit) == pytest.approx(0.45)
    assert cut.mismatch(Comparison(1.0, 1.0, 1.0, 0.0, True, 1.0)) == 1.0  # never below the identical bonus


def test_each_whole_product_rule_holds_up_to_its_limit_and_the_mismatch_is_the_worst_rule():
    cut = Thresholds(0.95)
    at_limits = Comparison(cut.max_different, cut.max_region, cut.min_visible, cut.max_occluded, True, cut.max_strokes)
    aligned = Verification(40, 45, (0.1, 0.1, 0.9, 0.9), False, 0.99, at_limits)
    assert cut.level(0.8, aligned) == MatchLevel.IDENTICAL  # every rule exactly at its limit still passes
    assert cut.mismatch(at_limits) == pytest.approx(1.0)
    # The worst of the three shares decides, whichever it is.
    assert cut.mismatch(Comparison(0.2, 0.0, 1.0, 0.0, True, 0.0)) == pytest.approx(0.2 / cut.max_different)
    assert cut.mismatch(Comparison(0.0, 0.5 * cut.max_region, 1.0, 0.0, True, 0.0)) == pytest.approx(0.5)
    assert cut.mismatch(Comparison(0.0, 0.0, 1.0, 0.0, True, 0.25 * cut.max_strokes)) == pytest.approx(0.25)
