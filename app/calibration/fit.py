"""Fitting the match levels' thresholds to a target rate of confident wrong answers.

Each calibration query was searched once, with its candidates' raw evidence kept (similarity, alignment,
the dense comparison). Here every combination of thresholds on the grid replays the levels and the ranking
of every query, without searching again, and the one that answers confidently most often while keeping
confident wrong answers at or under the target wins.

A confident wrong answer is a copy of a catalogue product whose first confident factory is another one, or
an unknown product (its own product left out of the search) answered confidently at all. The rate is over
all calibration queries, copies and unknown products together, in the proportion they were drawn.
"""

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, replace

from app.search.scoring import Hit, MatchLevel, Thresholds, rank_factories, with_evidence

NEAR_DUPLICATE = (0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 1.01)  # 1.01: never by similarity alone
MAX_REGION = (0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03)
MAX_STROKES = (0.05, 0.1, 0.2, 0.3, 1.0)


@dataclass(frozen=True)
class Observation:
    """One calibration query: the factory that makes its product (None: an unknown product) and its
    candidates as the search left them, each with its evidence."""

    factory_id: str | None
    hits: list[Hit]


@dataclass(frozen=True)
class Rates:
    queries: int
    confident_right: float  # copies whose first confident factory is theirs, of all copies
    confident_wrong: float  # confident wrong answers, of all queries (the calibrated figure)
    wrong_factory: float  # copies answered confidently with another factory, of all copies
    unknown_confident: float  # unknown products answered confidently, of all unknown products


@dataclass(frozen=True)
class Fit:
    thresholds: Thresholds
    rates: Rates
    met: bool  # the target was reached (else: the strictest thresholds on the grid)


def first_confident(observation: Observation, thresholds: Thresholds) -> str | None:
    """The factory the default search would answer with under these thresholds, or None."""
    hits = [with_evidence(_plain(hit), hit.verification, thresholds) for hit in observation.hits]
    for factory in rank_factories(hits):
        if factory.confident:
            return factory.factory_id
    return None


def measure(observations: list[Observation], thresholds: Thresholds) -> Rates:
    copies = [o for o in observations if o.factory_id is not None]
    unknown = [o for o in observations if o.factory_id is None]
    answers = [(o, first_confident(o, thresholds)) for o in observations]
    right = sum(1 for o, a in answers if o.factory_id is not None and a == o.factory_id)
    wrong_factory = sum(1 for o, a in answers if o.factory_id is not None and a is not None and a != o.factory_id)
    unknown_confident = sum(1 for o, a in answers if o.factory_id is None and a is not None)
    return Rates(
        queries=len(observations),
        confident_right=right / max(len(copies), 1),
        confident_wrong=(wrong_factory + unknown_confident) / max(len(observations), 1),
        wrong_factory=wrong_factory / max(len(copies), 1),
        unknown_confident=unknown_confident / max(len(unknown), 1),
    )


def fit(observations: list[Observation], target: float, base: Thresholds, source: str) -> Fit:
    """The thresholds on the grid with the most confident right answers whose confident wrong rate is at most
    `target`; ties go to the stricter. None reaching it: the strictest."""
    best: tuple[tuple[float, float], Thresholds, Rates] | None = None
    strictest: tuple[float, Thresholds, Rates] | None = None
    for candidate in _grid(base, source):
        rates = measure(observations, candidate)
        if rates.confident_wrong <= target:
            key = (rates.confident_right, -rates.confident_wrong)
            if best is None or key > best[0]:
                best = (key, candidate, rates)
        if strictest is None or rates.confident_wrong < strictest[0]:
            strictest = (rates.confident_wrong, candidate, rates)
    if best is not None:
        return Fit(best[1], best[2], met=True)
    assert strictest is not None
    return Fit(strictest[1], strictest[2], met=False)


def _grid(base: Thresholds, source: str) -> Iterable[Thresholds]:
    # Strictest first, so that among equals the stricter one is met first and kept.
    for near, region, strokes in itertools.product(
        sorted(NEAR_DUPLICATE, reverse=True), sorted(MAX_REGION), sorted(MAX_STROKES)
    ):
        yield replace(base, near_duplicate=near, max_region=region, max_strokes=strokes, source=source)


def _plain(hit: Hit) -> Hit:
    """The hit as FAISS found it: its level and score are replayed from its evidence."""
    return replace(hit, score=None, level=MatchLevel.SIMILAR, verification=None)
