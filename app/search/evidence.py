"""Which of a search's candidates are checked with local features (verify.py), and when checking stops.

Candidates come best similarity first and are checked in rounds, each round's pairs in parallel. Checking
stops once a candidate is proven identical and the next one is clearly less similar (below it by more than
COPY_MARGIN, and by more than the fit bonus the identical one fell short of): such a candidate cannot overtake
the identical one, whose bonus it could at most equal, and a copy of the same photo (another factory selling
it) would be about as similar as the identical one, not less. A photo of a product the catalogue lacks has no
identical candidate, so all VERIFY_TOP are checked.

Once a candidate is proven identical, a later one is checked only if it could change the answer: another copy
of the same picture (another factory selling it), or a sibling drawn the same but for a detail, which must
then be told apart by fit. Either looks like the proven copy itself, so a candidate whose stored thumbnail does
not resemble a proven copy's (as it is or mirrored) is left unchecked. Where the model cannot rule candidates
out by similarity (random weights put every candidate within COPY_MARGIN), this is what ends a copy's search.
One that does resemble it is shown by the query as the copy is, or mirrored if it is the copy's mirror image, so
only then is the mirrored query tried; and where keypoints proved the copy, they would align such a candidate
too, so its outline is not tried.
"""

from collections.abc import Mapping
from concurrent.futures import Executor
from itertools import takewhile
from typing import NamedTuple

import numpy as np

from app.search.fusion import ImageRef
from app.search.scoring import FIT_BONUS, IDENTICAL_BONUS, Hit, MatchLevel, Thresholds, measured_for, with_evidence
from app.search.verify import FeatureCache, QueryFeatures, Verification, verify

VERIFY_TOP = 30  # products checked with local features, best first
# Of those, the first MIRROR_TOP are also tried mirrored when they fail. A mirrored copy barely moves the
# embedding: in scripts/evaluate.py, every mirrored identical of the query's own product that decided its
# ranking came up in the first 10 (the 12 beyond were other products); trying all 30 doubled the matching work.
MIRROR_TOP = 10
# Of those, the first OUTLINE_TOP that are too plain for keypoints (a flag's stripes) are aligned by their
# outlines when keypoints fail: 10-20 ms a pair (shapes.py), so only where the copy would be, near the top, and
# only until keypoints prove a copy.
OUTLINE_TOP = 3
# The best candidate is checked alone first: a copy (the usual search) is then decided after one pair, its
# photo's mirror never needed; the rest go VERIFY_ROUND at a time, in parallel, deciding between rounds.
VERIFY_ROUND = 4
COPY_MARGIN = 0.05
# Correlation of two catalogue images' 32 px grey thumbnails above which one may be a copy or a sibling of the
# other. Of 11,175 pairs of Twemoji images 1% reach 0.69; siblings drawn the same and copies of one picture
# reach 0.9 and more. The bench's synthetic photos (one product centred on a plain ground) reach 0.73 in 10%.
RESEMBLES = 0.7
# Candidates more than a model's span below the best one in similarity are not checked: a copy of the photo is
# never that far below the best candidate. scripts/verify_span.py, effnet-lite0, every candidate checked: on
# OpenMoji the 369 copies proven identical sat at most 0.081 below the best candidate (99% within 0.052), on
# Twemoji (not tuned on) 322 at most 0.079; a product the catalogue lacks has 19 of its 30 candidates within 0.1,
# so its search checks a third fewer. A model not measured so (CLIP offline, random weights) checks all VERIFY_TOP.
VERIFY_SPANS = {"effnet-lite0": 0.1}

# Image id → its check (None: its stored copy could not be read), and whether the mirrored query was tried.
Checked = dict[int, tuple[Verification | None, bool]]


class _Copy(NamedTuple):
    """A candidate proven identical: its thumbnail (Features.resemblance), that mirrored, whether the query shows
    it mirrored, and whether keypoints (not its outline) proved it."""

    thumb: np.ndarray
    flipped: np.ndarray
    mirrored: bool
    by_keypoints: bool


class Evidence:
    """Checks candidates against a query's photos with the catalogue's stored features, on a thread pool."""

    def __init__(self, features: FeatureCache, pool: Executor) -> None:
        self.features = features
        self.pool = pool

    def add(
        self,
        hits: list[Hit],
        views: list[QueryFeatures],
        rows: Mapping[int, ImageRef],
        checked: Checked,
        thresholds: Thresholds,
        exhaustive: bool = False,
        span: float | None = None,
    ) -> list[Hit]:
        """Match levels for every hit, the first VERIFY_TOP within `span` of the best similarity checked until
        the answer is decided (all VERIFY_TOP when `exhaustive`: calibration replays every candidate's evidence).
        `checked` holds the checks made so far (a second pass reuses the first's) and gains the new ones; `rows`
        says which stored image each id is."""

        def check(image_id: int, mirror: bool, outline: bool) -> Verification | None:
            return self._check(views, rows[image_id].content_hash, mirror, outline)

        done: list[Hit] = []
        copies: dict[int, _Copy] = {}  # the candidates proven identical so far
        top = hits[:VERIFY_TOP]
        if span is not None and not exhaustive and top:
            floor = top[0].similarity - span  # hits come best first: those checked stay a prefix of them
            top = list(takewhile(lambda hit: hit.similarity >= floor, top))
        for start, end in rounds(len(top)):
            if not exhaustive and decided(done, top[start]):
                break
            if not exhaustive:
                self._remember_copies(done, rows, copies)
            # A copy keypoints proved: one that could change the answer (another copy of the picture, a sibling
            # drawn the same) is drawn as it is, so keypoints align it too; an outline's try costs 10-20 ms.
            outline = not any(copy.by_keypoints for copy in copies.values())
            wanted = []
            for rank, hit in enumerate(top[start:end], start):
                mirror = rank < MIRROR_TOP
                if copies:  # only one drawn as a proven copy is, and mirrored only where it is the copy's mirror
                    if not (sides := self._query_sides(rows[hit.image_id].content_hash, copies)):
                        continue
                    mirror = mirror and True in sides
                # Checked already, unless without the mirror that is now to be tried (a second pass ranked it higher).
                if (known := checked.get(hit.image_id)) is None or (mirror and not known[1]):
                    wanted.append((hit.image_id, mirror, outline and rank < OUTLINE_TOP))
            # Pairs are checked in parallel: OpenCV releases the GIL, and one search otherwise leaves a core idle.
            results = list(self.pool.map(check, *zip(*wanted, strict=True))) if wanted else []
            for (image_id, mirror, _), result in zip(wanted, results, strict=True):
                checked[image_id] = result, mirror
            done += [
                with_evidence(hit, checked.get(hit.image_id, (None, False))[0], thresholds) for hit in top[start:end]
            ]
        return done + [with_evidence(hit, None, thresholds) for hit in hits[len(done) :]]

    def _remember_copies(self, done: list[Hit], rows: Mapping[int, ImageRef], copies: dict[int, _Copy]) -> None:
        """The thumbnails of the candidates proven identical so far, once each."""
        for hit in done:
            if hit.level == MatchLevel.IDENTICAL and hit.image_id not in copies and hit.verification is not None:
                features = self.features.get(rows[hit.image_id].content_hash)
                if features is not None:
                    thumb = features.resemblance
                    flipped = np.ascontiguousarray(thumb[:, ::-1])
                    found = hit.verification
                    copies[hit.image_id] = _Copy(thumb, flipped, found.mirrored, found.aligned_by == "keypoints")

    def _query_sides(self, content_hash: str, copies: dict[int, _Copy]) -> set[bool]:
        """Whether the query would show the catalogue image mirrored (True), as it is (False), or either way (a
        symmetric drawing), were it a copy of the picture of a proven copy or of its mirror image: how the query
        shows that copy tells. Empty where it looks like no proven copy, or is unreadable (its check would find
        it unreadable again, and leave it unverified as skipping it does)."""
        if (features := self.features.get(content_hash)) is None:
            return set()
        thumb = features.resemblance
        sides = set()
        for copy in copies.values():
            if float((thumb * copy.thumb).mean()) >= RESEMBLES:
                sides.add(copy.mirrored)
            if float((thumb * copy.flipped).mean()) >= RESEMBLES:
                sides.add(not copy.mirrored)
        return sides

    def _check(self, views: list[QueryFeatures], content_hash: str, mirror: bool, outline: bool) -> Verification | None:
        """The best check of a catalogue image against any view (mirrored too, if `mirror`; by its outline too,
        if `outline` and it is too plain for keypoints); None when its stored copy cannot be read."""
        if (features := self.features.get(content_hash)) is None:
            return None
        results = [verify(view.features, features, view.mirrored if mirror else None, outline) for view in views]
        return max(results, key=lambda r: (r.identical, r.aligned, r.inliers))


def verify_span(embedder_name: str) -> float | None:
    """How far below the best candidate a model's copies are looked for; None: as far as VERIFY_TOP goes."""
    return measured_for(VERIFY_SPANS, embedder_name)


def rounds(count: int) -> list[tuple[int, int]]:
    """(start, end) of each round over `count` candidates: the first alone, then VERIFY_ROUND at a time."""
    starts = [0, *range(1, count, VERIFY_ROUND)] if count else []
    return [(start, min(count, start + (1 if start == 0 else VERIFY_ROUND))) for start in starts]


def decided(done: list[Hit], following: Hit) -> bool:
    """A candidate is identical, and the following one is clearly less similar than the best such and could
    not overtake it even as a perfect copy (a sibling that fits worse leaves room for one that fits better)."""
    identical = [hit for hit in done if hit.level == MatchLevel.IDENTICAL]
    if not identical:
        return False
    best = max(identical, key=lambda hit: hit.rank_score)
    unbeatable = best.rank_score - IDENTICAL_BONUS - FIT_BONUS  # a perfect copy scores its similarity + both
    return following.similarity < min(best.similarity - COPY_MARGIN, unbeatable)
