"""Calibration: replaying levels under other thresholds, fitting to a target, and the whole run on a small
catalogue (queries, fit, stored, used by the search, reported)."""

import pytest

from app.calibration.fit import (
    MAX_REGION,
    MAX_STROKES,
    NEAR_DUPLICATE,
    Observation,
    Rates,
    first_confident,
    fit,
    measure,
)
from app.calibration.service import CalibrationPlan
from app.core.errors import InvalidInputError
from app.search.compare import Comparison
from app.search.scoring import Hit, Thresholds
from app.search.verify import Verification


def aligned(largest: float) -> Verification:
    return Verification(40, 50, (0.1, 0.1, 0.9, 0.9), False, 0.99, Comparison(largest, largest, 1.0, 0.0, True, 0.0))


def hit(factory: str, product: str, similarity: float, largest: float | None = None) -> Hit:
    return Hit(
        hash(product) % 1000, product, factory, similarity, verification=None if largest is None else aligned(largest)
    )


def test_levels_and_rankings_are_replayed_under_other_thresholds():
    # The right product differs by 0.8% (a JPEG'd copy), a sibling elsewhere by 1.2% and looks closer.
    observation = Observation("F1", [hit("F2", "sibling", 0.97, 0.012), hit("F1", "mine", 0.93, 0.008)])
    assert first_confident(observation, Thresholds(0.95, max_region=0.015)) == "F2"  # both identical: closer wins
    assert first_confident(observation, Thresholds(0.95, max_region=0.01)) == "F1"  # the sibling is a shared part
    assert first_confident(observation, Thresholds(0.95, max_region=0.005)) is None
    unaligned = Observation(None, [hit("F3", "lookalike", 0.96)])
    assert first_confident(unaligned, Thresholds(0.95)) == "F3"  # near-duplicate by similarity alone
    assert first_confident(unaligned, Thresholds(0.97)) is None


def observations() -> list[Observation]:
    """Ten copies told apart from a sibling by a tighter region cut (the sibling more similar by more than its
    worse fit costs it), and ten unknown products whose nearest is an unaligned lookalike at similarity 0.955."""
    copies = [
        Observation(f"F{i}", [hit(f"F{i}", f"p{i}", 0.9, 0.002), hit("X", f"s{i}", 0.97, 0.006)]) for i in range(10)
    ]
    unknown = [Observation(None, [hit("Y", f"u{i}", 0.955)]) for i in range(10)]
    return copies + unknown


def test_fit_finds_the_thresholds_that_meet_the_target_with_most_right_answers():
    base = Thresholds(0.95)
    assert measure(observations(), base).confident_wrong == 1.0  # every copy and every unknown go wrong
    fitted = fit(observations(), target=0.01, base=base, source="test")
    assert fitted.met and fitted.rates.confident_wrong == 0.0 and fitted.rates.confident_right == 1.0
    assert fitted.thresholds.max_region < 0.006 and fitted.thresholds.near_duplicate > 0.955
    assert fitted.thresholds.source == "test"


def test_each_rate_is_counted_over_its_own_queries():
    def copy_answered(mine: str, answered: str | None) -> Observation:
        hits = [hit(answered, f"{mine}-{answered}", 0.9, 0.004)] if answered else [hit("Z", f"{mine}-z", 0.5)]
        return Observation(mine, hits)

    def unknown_answered(confidently: bool) -> Observation:
        return Observation(None, [hit("Y", f"u{confidently}", 0.9, 0.004 if confidently else None)])

    mixed = [
        copy_answered("F1", "F1"),
        copy_answered("F2", "F2"),
        copy_answered("F3", "F9"),  # another factory's product, confidently
        copy_answered("F4", None),  # nothing confident
        unknown_answered(True),
        unknown_answered(False),
    ]
    rates = measure(mixed, Thresholds(0.95))
    assert rates == Rates(
        queries=6, confident_right=2 / 4, confident_wrong=2 / 6, wrong_factory=1 / 4, unknown_confident=1 / 2
    )
    # One query of a kind: each rate is over that one, not over a floor of two.
    assert measure([copy_answered("F3", "F9")], Thresholds(0.95)).wrong_factory == 1.0
    assert measure([unknown_answered(True)], Thresholds(0.95)).unknown_confident == 1.0
    assert measure([], Thresholds(0.95)) == Rates(0, 0.0, 0.0, 0.0, 0.0)


def test_a_target_met_exactly_is_met():
    # One unknown product in ten looks identical under any thresholds: 0.1 wrong is the best there is.
    queries = [Observation(f"F{i}", [hit(f"F{i}", f"p{i}", 0.9, 0.004)]) for i in range(9)]
    queries.append(Observation(None, [hit("Y", "u", 0.95, 0.0)]))
    fitted = fit(queries, target=0.1, base=Thresholds(0.95), source="test")
    assert fitted.met and fitted.rates.confident_wrong == 0.1 and fitted.rates.confident_right == 1.0


def test_among_equally_good_thresholds_the_strictest_is_kept():
    # Aligned copies with clean comparisons are right under every threshold on the grid.
    queries = [Observation(f"F{i}", [hit(f"F{i}", f"p{i}", 0.9, 0.0)]) for i in range(5)]
    fitted = fit(queries, target=0.01, base=Thresholds(0.95), source="test")
    assert fitted.met and fitted.rates.confident_right == 1.0
    assert fitted.thresholds.near_duplicate == max(NEAR_DUPLICATE)  # never by similarity alone
    assert (fitted.thresholds.max_region, fitted.thresholds.max_strokes) == (min(MAX_REGION), min(MAX_STROKES))


def test_fit_falls_back_to_the_strictest_when_the_target_cannot_be_met():
    impossible = [Observation(None, [hit("Y", "u", 0.95, 0.0)])]  # an unknown product that looks identical
    fitted = fit(impossible, target=0.01, base=Thresholds(0.95), source="test")
    assert not fitted.met and fitted.rates.confident_wrong == 1.0


def test_a_calibration_run_on_a_small_catalogue_is_stored_and_used(make_services, effnet_embedder, catalogue):
    services = make_services(effnet_embedder)
    services.ingest.ingest_manifest(catalogue)  # 28 images, 16 products
    with pytest.raises(InvalidInputError, match="calibrating needs"):
        services.calibration.run(CalibrationPlan(copies=20, unknown=5))
    assert services.calibration.current().source == "default"


def test_calibration_measures_and_moves_toward_its_target(make_services, effnet_embedder, tmp_path):
    from app.demo.sample_catalogue import write_catalogue

    manifest = write_catalogue(tmp_path / "cat", factories=6, products_per_factory=5, size=240, seed=7)
    services = make_services(effnet_embedder)
    services.ingest.ingest_manifest(manifest)
    done = []
    info = services.calibration.run(CalibrationPlan(target=0.05, copies=40, unknown=10, seed=1), done.append)
    assert len(done) == 50 and info.source == "catalogue" and info.rates is not None
    assert info.rates.queries == 50 and info.rates.confident_wrong <= 0.05 + 1e-9
    assert services.search.thresholds == info.thresholds  # used from the next search on
    again = make_services(effnet_embedder)  # a restart picks it up from the database
    assert again.search.thresholds == info.thresholds and again.calibration.current().calibrated_at is not None
