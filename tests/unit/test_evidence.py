"""Which candidates are checked with local features, and when checking stops (app/search/evidence.py).

The pair check itself (verify.py) is replaced by a table of answers: what is under test here is the order of
the checks, where they stop, and what each hit is left with."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from app.search import evidence
from app.search.compare import Comparison
from app.search.evidence import COPY_MARGIN, MIRROR_TOP, VERIFY_ROUND, VERIFY_TOP, Evidence, decided, rounds
from app.search.fusion import ImageRef
from app.search.scoring import FIT_BONUS, Hit, MatchLevel, Thresholds, with_evidence
from app.search.verify import Features, Verification

SAME = Comparison(0.0, 0.0, 1.0, 0.0, True, 0.0)
IDENTICAL = Verification(60, 80, (0.0, 0.0, 1.0, 1.0), False, 0.99, SAME)
LOOKALIKE = Verification(0, 3, None, False)
MISALIGNED = Verification(90, 95, (0.0, 0.0, 1.0, 1.0), False, 0.5)  # more inliers than IDENTICAL, pixels disagree
THRESHOLDS = Thresholds(near_duplicate=1.01)
ALIKE = np.tile(np.linspace(0, 255, 80, dtype=np.float32), (60, 1))  # a left-to-right ramp
UNLIKE = np.tile(np.linspace(0, 255, 60, dtype=np.float32)[:, None], (1, 80))  # a top-to-bottom ramp


class Catalogue:
    """Stored features by content hash ("h<id>"); None for an image whose stored copy is unreadable. Every
    pair check goes through `checks`, which says which of its images are copies of the query."""

    def __init__(self, checks: "Checks", unreadable: frozenset[str] = frozenset()) -> None:
        self.checks = checks
        self.unreadable = unreadable
        self.read: list[str] = []
        self.unlike: set[str] = set()  # images whose thumbnail looks like no other's (the rest all alike)
        self.thumbs: dict[str, np.ndarray] = {}  # images with a thumbnail of their own

    def get(self, content_hash: str) -> Features | None:
        self.read.append(content_hash)
        if content_hash in self.unreadable:
            return None
        thumb = self.thumbs.get(content_hash, UNLIKE if content_hash in self.unlike else ALIKE)
        return Features(np.zeros((0, 2), np.float32), None, (1, 1), thumb, np.zeros((1, 1, 3)), content_hash)


class View:
    """A query photo's features, as evidence.py passes them on (their content is the fake verify's business)."""

    def __init__(self, features: str = "query") -> None:
        self.features = features

    def mirrored(self) -> str:
        return "mirrored"


class Checks(list[tuple[str, bool]]):
    """verify()'s stand-in: (content hash, mirror tried) per call; identical when the hash is in `copies`."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: set[str] = set()
        self.outlines: list[str] = []  # the content hashes whose outline alignment was allowed
        self.unlike: set[str] = set()  # the catalogue images that look like no other
        self.plain: set[str] = set()  # copies too plain for keypoints: proven identical by their outlines

    def __call__(self, query: Any, candidate: Features, mirrored: Any = None, outline: bool = False) -> Verification:
        content_hash = str(candidate.rgb)  # the fake catalogue keeps the hash there
        self.append((content_hash, mirrored is not None))
        if outline:
            self.outlines.append(content_hash)
        if content_hash not in self.copies or query is None:
            return LOOKALIKE
        if content_hash in self.plain:
            return replace(IDENTICAL, inliers=0, aligned_by="outline") if outline else LOOKALIKE
        return MISALIGNED if query == "blurred view" else IDENTICAL

    def catalogue(self, unreadable: frozenset[str] = frozenset()) -> Catalogue:
        catalogue = Catalogue(self, unreadable)
        catalogue.unlike = self.unlike
        return catalogue


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Checks:
    recorder = Checks()
    monkeypatch.setattr(evidence, "verify", recorder)
    return recorder


def hits(similarities: list[float]) -> list[Hit]:
    return [Hit(i, f"P{i}", f"F{i}", s) for i, s in enumerate(similarities)]


def rows(count: int) -> dict[int, ImageRef]:
    return {i: ImageRef(i, f"P{i}", content_hash=f"h{i}", factory_id=f"F{i}") for i in range(count)}


def run(
    checks: Checks, similarities: list[float], copies: set[int], exhaustive: bool = False, span: float | None = None
) -> list[Hit]:
    checks.copies.clear()
    checks.copies.update(f"h{i}" for i in copies)
    with ThreadPoolExecutor(1) as pool:  # one thread: the calls come in order
        found = Evidence(checks.catalogue(), pool).add(
            hits(similarities), [View()], rows(len(similarities)), {}, THRESHOLDS, exhaustive, span
        )
    return found


def checked_ids(checks: list[tuple[str, bool]]) -> list[int]:
    return sorted({int(name[1:]) for name, _ in checks})


def test_a_copy_ranked_first_and_clearly_ahead_decides_after_one_check_without_the_mirror(checks):
    found = run(checks, [0.95] + [0.80 - 0.001 * i for i in range(39)], copies={0})
    assert checks == [("h0", True)]  # the mirror could have been asked for; a clear copy never asks
    assert found[0].level == MatchLevel.IDENTICAL and found[0].verification == IDENTICAL
    assert [h.verification for h in found[1:]] == [None] * 39
    assert [h.image_id for h in found] == list(range(40))  # every hit kept, in order


def test_only_the_first_candidates_may_be_aligned_by_their_outlines(checks):
    run(checks, [0.9 - i * 0.001 for i in range(12)], copies=set())
    assert checks.outlines == [f"h{i}" for i in range(evidence.OUTLINE_TOP)]
    assert len(checks) == 12 and evidence.OUTLINE_TOP < evidence.MIRROR_TOP


def test_once_keypoints_prove_a_copy_later_candidates_are_not_aligned_by_their_outlines(checks):
    """Another copy of the picture, or a sibling drawn the same, would align by keypoints as the proven one did."""
    similarities = [0.95 - 0.001 * i for i in range(12)]  # all about as similar: every one is checked
    found = run(checks, similarities, copies={0, 2})
    assert checked_ids(checks) == list(range(12)) and checks.outlines == ["h0"]
    assert found[2].level == MatchLevel.IDENTICAL
    checks.clear(), checks.outlines.clear()
    checks.plain.add("h0")  # proven by its outline: a twin as plain as it may need its outline too
    found = run(checks, similarities, copies={0, 2})
    assert checks.outlines == [f"h{i}" for i in range(evidence.OUTLINE_TOP)]
    assert found[0].verification is not None and found[0].verification.aligned_by == "outline"
    assert found[0].level == MatchLevel.IDENTICAL and found[2].level == MatchLevel.IDENTICAL


def test_checking_goes_on_by_rounds_while_the_next_candidate_is_about_as_similar_as_the_copy(checks):
    similarities = [0.95 - 0.001 * i for i in range(1 + VERIFY_ROUND)] + [0.80 - 0.001 * i for i in range(35)]
    found = run(checks, similarities, copies={0})
    assert checked_ids(checks) == list(range(1 + VERIFY_ROUND))  # the best alone, one round, then decided
    assert [h.verification for h in found[1 + VERIFY_ROUND :]] == [None] * (39 - VERIFY_ROUND)


def test_a_candidate_about_as_similar_as_the_copy_is_checked_too_another_factory_may_sell_it(checks):
    within, beyond = 0.95 - COPY_MARGIN + 0.001, 0.95 - COPY_MARGIN - 0.001
    similarities = [0.95] + [0.949 - 0.001 * i for i in range(VERIFY_ROUND)] + [within] * VERIFY_ROUND + [beyond]
    found = run(checks, similarities + [0.5] * 16, copies={0, 1 + VERIFY_ROUND})
    assert checked_ids(checks) == list(range(1 + 2 * VERIFY_ROUND))  # the third round decides nothing more
    assert found[1 + VERIFY_ROUND].level == MatchLevel.IDENTICAL
    assert all(h.verification is None for h in found[1 + 2 * VERIFY_ROUND :])


def test_without_a_copy_every_top_candidate_is_checked_and_no_more(checks):
    found = run(checks, [0.9 - 0.001 * i for i in range(VERIFY_TOP + 10)], copies=set())
    assert checked_ids(checks) == list(range(VERIFY_TOP))
    assert all(h.verification == LOOKALIKE for h in found[:VERIFY_TOP])
    assert all(h.verification is None for h in found[VERIFY_TOP:])


def test_candidates_beyond_the_span_below_the_best_are_not_checked(checks):
    similarities = [0.9, 0.85, 0.801, 0.8, 0.799, 0.7] + [0.6] * 30  # the span: 0.1 below 0.9, 0.8 included
    found = run(checks, similarities, copies={4}, span=0.1)
    assert checked_ids(checks) == [0, 1, 2, 3]  # the copy just below the span is not looked for
    assert found[4].verification is None and found[4].level == MatchLevel.SIMILAR
    assert [h.image_id for h in found] == list(range(len(similarities)))  # every hit kept, in order


def test_a_copy_within_the_span_is_found_and_calibration_checks_past_the_span(checks):
    similarities = [0.9 - 0.005 * i for i in range(VERIFY_TOP + 5)]  # 0.9 down to 0.73
    found = run(checks, similarities, copies={18}, span=0.1)  # 0.81: within
    assert found[18].level == MatchLevel.IDENTICAL and checked_ids(checks) == list(range(21))  # 0.8 the last
    checks.clear()
    run(checks, similarities, copies=set(), exhaustive=True, span=0.1)
    assert checked_ids(checks) == list(range(VERIFY_TOP))


def test_the_span_is_the_measured_models_only():
    assert evidence.verify_span("effnet-lite0") == evidence.VERIFY_SPANS["effnet-lite0"] == 0.1
    assert evidence.verify_span("openclip:ViT-B-32:laion2b_s34b_b79k") is None  # not measured offline
    assert evidence.verify_span("openclip:sourcelens-tiny:random") is None


def test_exhaustive_checking_goes_on_past_the_copy(checks):
    run(checks, [0.95] + [0.5] * (VERIFY_TOP + 5), copies={0}, exhaustive=True)
    assert checked_ids(checks) == list(range(VERIFY_TOP))


def test_only_the_first_candidates_are_tried_mirrored(checks):
    run(checks, [0.9 - 0.001 * i for i in range(VERIFY_TOP)], copies=set())
    mirrored = sorted(int(name[1:]) for name, mirror in checks if mirror)
    assert mirrored == list(range(MIRROR_TOP))


def test_checks_made_already_are_reused_and_a_candidate_moved_up_gets_its_mirror_tried(checks):
    checked = {i: (LOOKALIKE, i < MIRROR_TOP) for i in range(VERIFY_TOP)}
    checked[12] = (LOOKALIKE, False)
    similarities = [0.9 - 0.001 * i for i in range(VERIFY_TOP)]
    similarities[12] = 0.95  # a second pass moved it into the mirrored ranks
    order = sorted(range(VERIFY_TOP), key=lambda i: -similarities[i])
    found_hits = [Hit(i, f"P{i}", f"F{i}", similarities[i]) for i in order]
    checks.copies.clear()
    with ThreadPoolExecutor(1) as pool:
        Evidence(checks.catalogue(), pool).add(found_hits, [View()], rows(VERIFY_TOP), checked, THRESHOLDS)
    assert [(name, mirror) for name, mirror in checks] == [("h12", True)]
    assert checked[12] == (LOOKALIKE, True)


def test_an_unreadable_stored_copy_leaves_its_hit_unverified(checks):
    checks.copies.clear()
    catalogue = checks.catalogue(unreadable=frozenset({"h1"}))
    with ThreadPoolExecutor(2) as pool:
        found = Evidence(catalogue, pool).add(hits([0.9, 0.8]), [View()], rows(2), {}, THRESHOLDS)
    assert found[1].verification is None and found[0].verification == LOOKALIKE
    assert "h1" in catalogue.read


def proven(similarity: float, comparison: Comparison = SAME) -> Hit:
    """A candidate checked and found identical, scored as the search scores it."""
    verification = Verification(60, 80, (0.0, 0.0, 1.0, 1.0), False, 0.99, comparison)
    return with_evidence(Hit(0, "P0", "F0", similarity), verification, THRESHOLDS)


def test_decided_needs_an_identical_and_a_clearly_less_similar_next_candidate():
    copy = proven(0.9)
    near = Hit(1, "P1", "F1", 0.99, level=MatchLevel.NEAR_DUPLICATE)
    assert decided([copy], Hit(2, "P2", "F2", 0.9 - COPY_MARGIN - 0.001))
    assert not decided([copy], Hit(2, "P2", "F2", 0.9 - COPY_MARGIN + 0.001))
    assert not decided([near], Hit(2, "P2", "F2", 0.1))  # a near-duplicate by similarity is not proof
    assert not decided([], Hit(2, "P2", "F2", 0.1))


def test_rounds_take_the_best_candidate_alone_then_the_rest_a_few_at_a_time():
    assert rounds(0) == [] and rounds(1) == [(0, 1)]
    assert rounds(1 + VERIFY_ROUND + 2) == [(0, 1), (1, 1 + VERIFY_ROUND), (1 + VERIFY_ROUND, 3 + VERIFY_ROUND)]
    assert sum(end - start for start, end in rounds(VERIFY_TOP)) == VERIFY_TOP


def test_each_candidate_keeps_its_best_check_over_the_views(checks):
    checks.copies.add("h0")
    with ThreadPoolExecutor(1) as pool:
        found = Evidence(checks.catalogue(), pool).add(
            hits([0.9]), [View("blurred view"), View("sharp view")], rows(1), {}, THRESHOLDS
        )
    assert found[0].verification == IDENTICAL and len(checks) == 2  # the second view proved it


def test_by_default_checking_stops_early(checks):
    checks.copies.add("h0")
    with ThreadPoolExecutor(1) as pool:
        Evidence(checks.catalogue(), pool).add(hits([0.95] + [0.5] * 20), [View()], rows(21), {}, THRESHOLDS)
    assert checks == [("h0", True)]


def test_a_candidate_exactly_the_margin_below_the_copy_is_still_checked():
    copy = proven(0.9)
    assert not decided([copy], Hit(1, "P1", "F1", copy.similarity - COPY_MARGIN))


def test_a_copy_that_barely_passes_leaves_room_for_a_better_fitting_one_further_down():
    # A sibling drawn the same but for a detail passes at the limit of the differing-region rule: a candidate
    # up to the whole fit bonus below it could still be the real copy, and outrank it, so is checked.
    at_limit = proven(0.9, Comparison(0.05, THRESHOLDS.max_region, 1.0, 0.0, True, 0.0))
    assert at_limit.level == MatchLevel.IDENTICAL
    assert not decided([at_limit], Hit(1, "P1", "F1", 0.9 - COPY_MARGIN - 0.001))
    assert not decided([at_limit], Hit(1, "P1", "F1", 0.9 - FIT_BONUS + 0.001))
    assert decided([at_limit], Hit(1, "P1", "F1", 0.9 - FIT_BONUS - 0.001))
    # The best-scoring copy decides: a perfect one beside it restores the usual margin.
    assert decided([at_limit, proven(0.89)], Hit(1, "P1", "F1", 0.89 - COPY_MARGIN - 0.001))


def test_a_candidate_checked_unmirrored_below_the_mirrored_ranks_is_not_checked_again(checks):
    checked = {i: (LOOKALIKE, i < MIRROR_TOP) for i in range(VERIFY_TOP)}
    with ThreadPoolExecutor(1) as pool:
        Evidence(checks.catalogue(), pool).add(
            hits([0.9 - 0.001 * i for i in range(VERIFY_TOP)]), [View()], rows(VERIFY_TOP), checked, THRESHOLDS
        )
    assert checks == []  # rank MIRROR_TOP is the first not mirrored: its plain check stands


def test_once_a_copy_is_found_only_candidates_that_look_like_it_are_checked(checks):
    """Every candidate about as similar as the copy (as random weights leave them) would be checked; those whose
    thumbnail does not resemble the copy's can be neither another copy of it nor a sibling drawn the same."""
    similarities = [0.95 - 0.001 * i for i in range(VERIFY_TOP)]
    checks.unlike.update(f"h{i}" for i in range(1, VERIFY_TOP) if i % 3)  # two in three look like no other
    found = run(checks, similarities, copies={0, 3})
    assert checked_ids(checks) == [0] + [i for i in range(1, VERIFY_TOP) if i % 3 == 0]
    assert found[3].level == MatchLevel.IDENTICAL  # another factory's copy is still found
    assert all(found[i].verification is None for i in range(1, VERIFY_TOP) if i % 3)
    checks.clear()
    run(checks, similarities, copies=set())  # without a copy, nothing rules a candidate out
    assert checked_ids(checks) == list(range(VERIFY_TOP))
    checks.clear()
    run(checks, similarities, copies={0}, exhaustive=True)  # calibration replays every candidate's evidence
    assert checked_ids(checks) == list(range(VERIFY_TOP))


def test_a_lookalike_is_shown_as_the_copy_is_its_mirror_image_the_other_way_and_a_flat_one_resembles_nothing(
    checks,
):
    catalogue = checks.catalogue()
    catalogue.unlike = {"h1"}
    catalogue.thumbs = {"h0": ALIKE[:, ::-1], "h2": np.full((60, 80), 7.0), "h3": ALIKE[:, ::-1]}  # the copy: mirrored
    found = Evidence(catalogue, ThreadPoolExecutor(1))
    for query_mirrored in (False, True):
        copies: dict = {}
        proven = with_evidence(Hit(0, "P0", "F0", 0.9), replace(IDENTICAL, mirrored=query_mirrored), THRESHOLDS)
        found._remember_copies([proven, Hit(1, "P1", "F1", 0.8)], rows(3), copies)
        assert list(copies) == [0]
        assert found._query_sides("h3", copies) == {query_mirrored}  # drawn as the copy: shown as it is
        assert found._query_sides("h5", copies) == {not query_mirrored}  # the ramp: the copy's mirror image
        assert found._query_sides("h1", copies) == found._query_sides("h2", copies) == set()  # another ramp; flat


def test_after_a_copy_only_a_candidate_drawn_as_its_mirror_image_is_tried_mirrored(checks):
    """A twin drawn as the copy is shown as the copy is; one that is its mirror image, mirrored."""
    catalogue = checks.catalogue()
    catalogue.thumbs = {f"h{i}": ALIKE[:, ::-1] for i in (2, 4)}  # the copy's mirror image; the rest as the copy
    checks.copies.add("h0")
    similarities = [0.9 - 0.001 * i for i in range(6)]  # all about as similar: every one is checked
    with ThreadPoolExecutor(1) as pool:
        found = Evidence(catalogue, pool).add(hits(similarities), [View()], rows(6), {}, THRESHOLDS)
    assert checks == [("h0", True), ("h1", False), ("h2", True), ("h3", False), ("h4", True), ("h5", False)]
    assert found[0].level == MatchLevel.IDENTICAL and all(hit.verification is not None for hit in found)


def test_after_a_copy_an_unreadable_candidate_is_read_once_and_left_unverified(checks):
    checks.copies.clear()
    checks.copies.add("h0")
    catalogue = checks.catalogue(unreadable=frozenset({"h1"}))
    with ThreadPoolExecutor(1) as pool:
        found = Evidence(catalogue, pool).add(hits([0.9, 0.89, 0.88]), [View()], rows(3), {}, THRESHOLDS)
    assert found[0].level == MatchLevel.IDENTICAL and found[1].verification is None
    assert catalogue.read.count("h1") == 1 and checked_ids(checks) == [0, 2]
