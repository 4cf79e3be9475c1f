"""Geometric verification: do the query and a catalogue image show the same object, by local features?

Embeddings say two photos look alike; local features say the same physical pattern appears in both, at a
consistent position, scale and rotation. ORB keypoints (binary, rotation- and scale-tolerant, a few ms on a
320 px image), Lowe's ratio test (drops the ambiguous matches that repetitive patterns produce), then a
RANSAC affine transform (rotation, scale, stretch, shift: what crops, resizes, rotations, pads, banners and
screenshot frames do to a photo). ORB is not mirror-invariant, so a failed pair is retried with the query
mirrored. The inlier count and the matched region are the evidence shown with each hit. An aligned pair is
then compared pixel by pixel (compare.py): same product, or a shared part only.
"""

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from functools import cached_property
from threading import Lock, RLock
from typing import Literal, TypeVar

import cv2
import faiss
import numpy as np
from PIL import Image

from app.catalog.local_features import LocalFeatureStore
from app.search import shapes
from app.search.compare import NOT_COMPARED, Comparison, compare, small_copy

ORB_FEATURES = 600
ORB_SCALE = 1.2  # between pyramid levels (OpenCV's default)
# Flat artwork (an even fill, soft anti-aliased outlines) gives FAST's default contrast of 20 grey levels few
# corners: a quarter of Twemoji's images yield under 85, some under 10, and their copies then never verify.
# Such an image is detected again at a lower contrast. Changing detection changes every stored feature, so
# FEATURES_VERSION names the store's folder (an older one is left unread; features are then made again).
FEW_CORNERS = 150
LOW_CONTRAST = 8
FEATURES_VERSION = "orb-2"
RATIO = 0.8  # Lowe's ratio: a match must beat the second-best candidate clearly
RANSAC_PX = 6.0  # reprojection tolerance, on images of about 320 px
SIMILAR_SHARE = 0.95  # of the affine's inliers the similarity must keep within RANSAC_PX to replace it
PRECISE_PX = 3.0  # the similarity is fitted to the inliers within this, on images of about 320 px
MIN_MATCHES = 8  # fewer tentative matches than this cannot support a transform worth trusting
# The quick look: ORB lists its finest-scale keypoints first. Of 271 edited copies (evaluate.py's transforms
# on the sample catalogue) none had fewer than 15 matches among the first 150, and 71% of unrelated pairs had
# fewer than 5, so are rejected after matching 150 keypoints instead of 600. In scripts/evaluate.py a cut at
# 8 cost two cropped queries their top-1 (crop 0.930 -> 0.920); at 5 the table is unchanged.
SMALL_QUERY = 160  # a query with a shorter side under this is enlarged to DETECTION_SIDE for detection
DETECTION_SIDE = 256
QUICK_POINTS = 150
QUICK_MATCHES = 5
# Unrelated pairs rarely reach this many consistent inliers (tests/unit/test_verify.py; scripts/evaluate.py
# reports the inlier counts of unrelated queries).
VERIFIED_INLIERS = 12
# Aligned pixels of the same photo correlate at 0.95+ even re-coloured; unrelated products whose patterns
# happen to align stay below 0.85 (tests/unit/test_verify.py, scripts/evaluate.py).
IDENTICAL_AGREEMENT = 0.85
# The whole product the same (compare.py): no region of differing pixels larger than MAX_REGION of the two
# subjects, at most MAX_DIFFERENT of them in all, nor MAX_STROKES of either image's edges without a counterpart
# in the other (another print or glyph, drawn in thin strokes), and the query shows at least MIN_VISIBLE of the
# catalogue product with at most MAX_OCCLUDED of the image covered. Set on OpenMoji (scripts/evaluate.py): of
# its copies proven identical at 1.5% and 0.2, 4 in 369 differ beyond 0.75% or 0.1, and 15 of the 36 unknown
# products answered identical do (siblings drawn the same but for a skin tone, a badge, a gender sign); on the
# synthetic catalogue's textured photos, 4 copies in 381.
MAX_REGION = 0.0075
MAX_DIFFERENT = 0.25
MAX_STROKES = 0.1
MIN_VISIBLE = 0.5
MAX_OCCLUDED = 0.3
THUMB_SCALE = 0.25  # the aligned pixels are compared at 80 px: past JPEG noise and small misalignment
MIN_OVERLAP = 0.15  # of the candidate's area, for the pixel agreement to mean anything
RESEMBLANCE_SIDE = 32  # of the thumbnail that says whether two catalogue images look alike (evidence.py)
TILE = 8  # pixels of the 80 px thumbs per side of a tile
FLAT_STD = 3.0  # grey levels: a tile flatter than this is background
MIN_TILES = 4

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Features:
    points: np.ndarray  # (n, 2) float32 keypoint positions, pixels
    descriptors: np.ndarray | None  # (n, 32) uint8 ORB descriptors; None when the image has no corners
    size: tuple[int, int]  # width, height
    thumb: np.ndarray  # grey, blurred, THUMB_SCALE of the size: for comparing aligned pixels
    small: np.ndarray  # RGB, at most compare.SIDE pixels: a catalogue image as compare.py compares it (a query: rgb)
    rgb: np.ndarray | None = None  # the photo itself, kept for a query (compare.py warps it)
    rgb_scale: float = 1.0  # keypoint pixels per pixel of `rgb` (a small query is enlarged for detection)

    @cached_property
    def resemblance(self) -> np.ndarray:
        """The thumbnail at RESEMBLANCE_SIDE square, zero mean and unit deviation: the mean of the product of two
        is their correlation (0 for a flat one). Made once while the features stay cached: a search compares
        every candidate's with a proven copy's, and making them anew took 2 ms a search."""
        side = (RESEMBLANCE_SIDE, RESEMBLANCE_SIDE)
        small = cv2.resize(np.asarray(self.thumb, np.float32), side, interpolation=cv2.INTER_AREA)
        deviation = float(small.std())
        return (small - small.mean()) / deviation if deviation > 1e-6 else np.zeros_like(small)


@dataclass(frozen=True)
class Verification:
    inliers: int
    matches: int  # tentative matches that passed the ratio test
    region: tuple[float, float, float, float] | None  # inliers' box in the catalogue image, 0..1 fractions
    mirrored: bool  # the query matched once mirrored
    agreement: float = 0.0  # correlation of the aligned pixels, -1..1; 0.0 when too few inliers to align them
    comparison: Comparison = NOT_COMPARED  # the whole product compared, colours included (compare.py)
    # "outline": a product too plain for keypoints, lined up by its edges (shapes.py)
    aligned_by: Literal["keypoints", "outline"] = "keypoints"

    @property
    def verified(self) -> bool:
        return self.inliers >= VERIFIED_INLIERS or self.aligned_by == "outline"

    @property
    def aligned(self) -> bool:
        """The two correspond: enough consistent keypoints (or outlines that line up), and the aligned pixels
        agree where both are drawn."""
        return self.verified and self.agreement >= IDENTICAL_AGREEMENT

    @property
    def identical(self) -> bool:
        """With the default thresholds (scoring.Thresholds holds a catalogue's own): the same product, however
        cropped, scaled, turned, mirrored, framed, recoloured as a whole or partly covered."""
        compared = self.comparison
        return (
            self.aligned
            and compared.largest <= MAX_REGION
            and compared.different <= MAX_DIFFERENT
            and compared.strokes <= MAX_STROKES
            and compared.visible >= MIN_VISIBLE
            and compared.occluded <= MAX_OCCLUDED
        )


NOT_VERIFIED = Verification(0, 0, None, False)


def extract(image: Image.Image) -> Features:
    """A catalogue image's features (without the photo itself, which a cache need not hold)."""
    return _detect(image, keep=False)[1]


def _detect(image: Image.Image, keep: bool = True) -> tuple[Sequence[cv2.KeyPoint], Features]:
    grey = np.asarray(image.convert("L"))
    keypoints, descriptors = cv2.ORB_create(ORB_FEATURES, ORB_SCALE).detectAndCompute(grey, None)
    if len(keypoints) < FEW_CORNERS:
        detector = cv2.ORB_create(ORB_FEATURES, ORB_SCALE, fastThreshold=LOW_CONTRAST)
        keypoints, descriptors = detector.detectAndCompute(grey, None)
    return keypoints, _features(keypoints, descriptors, _rgb(image), keep)


def _rgb(image: Image.Image) -> np.ndarray:
    """The picture's pixels, without a converted copy first when it is RGB already (a search's photos are)."""
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _features(
    keypoints: Sequence[cv2.KeyPoint], descriptors: np.ndarray | None, rgb: np.ndarray, keep: bool
) -> Features:
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    thumb = cv2.resize(rgb, None, fx=THUMB_SCALE, fy=THUMB_SCALE, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(cv2.GaussianBlur(thumb, (3, 3), 0), cv2.COLOR_RGB2GRAY)
    size = (rgb.shape[1], rgb.shape[0])
    if keep:  # a query's: compare.py compares the photo itself (`rgb`), never a small copy of it
        return Features(points, descriptors, size, grey, rgb, rgb)
    return Features(points, descriptors, size, grey, small_copy(rgb))


def _mirror(image: Image.Image, keypoints: Sequence[cv2.KeyPoint]) -> Features:
    """The mirrored photo's features without detecting again. ORB's detector (image pyramid, FAST corners,
    Harris scores) finds the mirror of what it finds in the photo, so the keypoints are mirrored (each on its
    pyramid level's pixel grid, its angle reflected) and only their descriptors computed: about 2 ms instead
    of 9 on a busy 320 px photo, with the same inlier counts as detecting anew on tests' mirrored copies."""
    rgb = np.ascontiguousarray(_rgb(image)[:, ::-1])
    width = rgb.shape[1]
    reflected = [
        cv2.KeyPoint(
            width - ORB_SCALE**k.octave - k.pt[0], k.pt[1], k.size, (180.0 - k.angle) % 360.0, k.response, k.octave
        )
        for k in keypoints
    ]
    grey = np.ascontiguousarray(np.asarray(image.convert("L"))[:, ::-1])  # as _detect makes it
    reflected, descriptors = cv2.ORB_create(ORB_FEATURES, ORB_SCALE).compute(grey, reflected)
    return _features(reflected, descriptors, rgb, keep=True)


def verify(
    query: Features,
    candidate: Features,
    mirrored_query: Callable[[], Features] | None = None,
    outline: bool = False,
) -> Verification:
    """Verify a pair; unless it is identical as it is, try the mirrored query too (when given), and
    where keypoints cannot prove a catalogue image too plain for them identical, its outline (when `outline`):
    a flag's few keypoints often lie along one stripe's edge, which pins no turn or scale across it."""
    result = _by_keypoints(query, candidate, mirrored_query)
    if outline and not result.identical and len(candidate.points) < FEW_CORNERS and query.rgb is not None:
        lined_up = _by_outline(query, candidate)
        # Else the keypoints' evidence stands (their inlier count, or their alignment's differences).
        if lined_up is not None and (lined_up.identical or (lined_up.aligned and not result.aligned)):
            return lined_up
    return result


def _by_keypoints(query: Features, candidate: Features, mirrored_query: Callable[[], Features] | None) -> Verification:
    result = _verify(query, candidate)
    if mirrored_query is None or result.identical:
        return result  # identical as it came: the photo as it came is kept, whatever its mirror would show
    # A symmetric drawing aligns unmirrored too, its edges agreeing; only the whole comparison tells.
    flipped = replace(_verify(mirrored_query(), candidate), mirrored=True)
    if flipped.identical:
        return flipped
    closer = flipped.aligned and (not result.aligned or flipped.comparison.largest < result.comparison.largest)
    better = flipped.agreement > result.agreement + 0.02 and flipped.verified
    return flipped if closer or better else result


def _by_outline(query: Features, candidate: Features) -> Verification | None:
    """The pair aligned by its edges (shapes.py), then judged as a keypoint alignment is; None if none found."""
    assert query.rgb is not None
    found = shapes.align(query.rgb, candidate.small, candidate.size)
    if found is None:
        return None
    from_rgb, _ = found
    corners = np.array([[0, 0], [query.rgb.shape[1], query.rgb.shape[0]]], np.float32)
    region = _region(np.clip(corners @ from_rgb[:, :2].T + from_rgb[:, 2], 0, candidate.size), candidate.size)
    mirrored = bool(np.linalg.det(from_rgb[:, :2]) < 0)
    transform = np.hstack([from_rgb[:, :2] / query.rgb_scale, from_rgb[:, 2:]])  # to the keypoints' pixels
    return _judged(query, candidate, transform, Verification(0, 0, region, mirrored, aligned_by="outline"))


def _verify(query: Features, candidate: Features) -> Verification:
    if query.descriptors is None or candidate.descriptors is None or len(candidate.descriptors) < 2:
        return NOT_VERIFIED
    # Most candidates are lookalikes, not copies: a quick look with the query's first keypoints rules them out
    # at a quarter of the matching cost, and the full match then only adds the rest.
    quick = len(query.descriptors) > 2 * QUICK_POINTS
    good = _good_matches(query.descriptors[:QUICK_POINTS] if quick else query.descriptors, candidate.descriptors)
    if quick:
        if len(good) < QUICK_MATCHES:
            return Verification(0, len(good), None, False)
        rest = _good_matches(query.descriptors[QUICK_POINTS:], candidate.descriptors)
        good += [(q + QUICK_POINTS, t) for q, t in rest]
    if len(good) < MIN_MATCHES:
        return Verification(0, len(good), None, False)
    source = query.points[[q for q, _ in good]]
    target = candidate.points[[t for _, t in good]]
    transform, mask = cv2.estimateAffine2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX, maxIters=500, confidence=0.99
    )
    if transform is None or mask is None:
        return Verification(0, len(good), None, False)
    inliers = mask.ravel().astype(bool)
    inlier_points = target[inliers]
    region = _region(inlier_points, candidate.size)
    if len(inlier_points) < VERIFIED_INLIERS:
        # Too few to trust the alignment, so its pixels are not compared: most lookalikes end here, and a pair
        # costs 0.56 ms instead of 0.78 (scripts/bench_search.py's pairs, AMD EPYC family 25 model 17).
        return Verification(len(inlier_points), len(good), region, False)
    transform = _simplest(source[inliers], inlier_points, transform)
    return _judged(query, candidate, transform, Verification(len(inlier_points), len(good), region, False))


def _judged(query: Features, candidate: Features, transform: np.ndarray, found: Verification) -> Verification:
    """An alignment (`transform`: 2x3, the query's keypoint pixels to the catalogue image's) judged: how well
    the aligned pixels agree, and where they correspond, the whole product compared."""
    thumb_transform = transform.copy()
    thumb_transform[:, 2] *= THUMB_SCALE  # same rotation and scale; the shift shrinks with the thumbs
    result = replace(found, agreement=_agreement(query.thumb, candidate.thumb, thumb_transform))
    if not result.aligned or query.rgb is None:
        return result  # the whole product is compared only where the two correspond
    from_rgb = np.hstack([transform[:, :2] * query.rgb_scale, transform[:, 2:]])  # the photo as it came
    return replace(result, comparison=compare(query.rgb, candidate.small, candidate.size, from_rgb))


def _simplest(source: np.ndarray, target: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The similarity (turn, uniform scale, shift) through the inliers where it fits them as well as the affine
    does, else the affine. Edited copies are similar to their catalogue image (every evaluate.py transform is),
    and a similarity is pinned by any two points, where an affine fitted to inliers on a thin strip (a rim, a
    lid) stretches freely across it: on a sample catalogue photo against its own stored copy, 3.5 px off at
    the far edge, enough to turn its every outline into a stroke that differs."""
    # Fitted to the inliers that agree within PRECISE_PX, then refined on them: the median-residual fit
    # (LMEDS) left a flat drawing with its keypoints on one part turned 1.3 degrees and 2% too large, a strip
    # along its far outline differing (tests/api/test_search_api.py's photo of two products).
    similarity, _ = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=PRECISE_PX, maxIters=500, refineIters=50
    )
    if similarity is None:
        return affine
    residuals = np.linalg.norm(source @ similarity[:, :2].T + similarity[:, 2] - target, axis=1)
    return similarity if np.mean(residuals <= RANSAC_PX) >= SIMILAR_SHARE else affine


def _good_matches(query: np.ndarray, candidate: np.ndarray) -> list[tuple[int, int]]:
    """(query index, candidate index) of the nearest matches that pass Lowe's ratio test. FAISS's brute-force
    Hamming search gives the same distances as OpenCV's BFMatcher at a sixth of its CPU time (one thread:
    1.0 vs 6.0 ms for 600 x 600 descriptors), and matching is most of verification's cost under load."""
    distances, nearest = faiss.knn_hamming(query, candidate, 2)
    good = np.flatnonzero(distances[:, 0] < RATIO * distances[:, 1])
    return list(zip(good.tolist(), nearest[good, 0].tolist(), strict=True))


def one_thread_per_pair() -> None:
    """Initialiser of the pool that verifies pairs: pairs already run in parallel there, so each pair's
    Hamming search keeps to its own thread (FAISS would otherwise start one OpenMP thread per core for each)."""
    faiss.omp_set_num_threads(1)


def _agreement(query: np.ndarray, candidate: np.ndarray, transform: np.ndarray) -> float:
    """How well the candidate's pixels agree with the query warped onto it: the median correlation over
    textured tiles of their overlap. Repetitive patterns can align unrelated images' keypoints; they cannot
    make the aligned pixels agree. The median lets a banner or badge over part of the photo pass."""
    height, width = candidate.shape
    warped = cv2.warpAffine(query.astype(np.float32), transform, (width, height), borderValue=np.nan)
    if (~np.isnan(warped)).sum() < MIN_OVERLAP * width * height:
        return 0.0
    a, b = _tiles(warped), _tiles(candidate.astype(np.float32))  # (tiles, TILE * TILE)
    a_std, b_std = a.std(axis=1), b.std(axis=1)  # NaN where a tile leaves the overlap
    # Outside the overlap, or flat background, a tile says nothing either way.
    keep = (a_std >= FLAT_STD) & (b_std >= FLAT_STD)
    if keep.sum() < MIN_TILES:
        return 0.0
    a, b = a[keep] - a[keep].mean(axis=1, keepdims=True), b[keep] - b[keep].mean(axis=1, keepdims=True)
    correlations = (a * b).mean(axis=1) / (a_std[keep] * b_std[keep])
    return round(float(np.median(correlations)), 3)


def _tiles(image: np.ndarray) -> np.ndarray:
    """The whole TILE×TILE tiles of an image, one per row."""
    rows, cols = image.shape[0] // TILE, image.shape[1] // TILE
    cut = image[: rows * TILE, : cols * TILE]
    return cut.reshape(rows, TILE, cols, TILE).swapaxes(1, 2).reshape(rows * cols, TILE * TILE)


def _region(points: np.ndarray, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    if len(points) == 0:
        return None
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    width, height = size
    return (
        round(float(x0) / width, 3),
        round(float(y0) / height, 3),
        round(float(x1) / width, 3),
        round(float(y1) / height, 3),
    )


class QueryFeatures:
    """A query photo's features, and its mirror's. With a `pool`, the photo's are extracted there at once, so
    that they overlap other work (the nearest-neighbour search, or the forward pass); without, on first use. The
    mirror's always on first use.

    A small photo is enlarged for detection: ORB finds too few corners in a thumbnail. On the OpenMoji
    catalogue, copies reduced to 35-70% were proven identical 47 times in 50 enlarged, 31 as they came."""

    def __init__(self, image: Image.Image, pool: Executor | None = None) -> None:
        self.photo = _rgb(image)
        self.scale = max(1.0, DETECTION_SIDE / min(image.size)) if min(image.size) < SMALL_QUERY else 1.0
        if self.scale > 1.0:
            size = (round(image.width * self.scale), round(image.height * self.scale))
            image = image.resize(size, Image.Resampling.BICUBIC)
        self.image = image
        self._lock = RLock()  # mirrored() computes the plain features first, under the same lock
        self._plain = pool.submit(_detect, image) if pool else None
        # Made on first need, not ahead: a search its best candidate decides (a copy's) never needs it.
        self._flipped: Future[Features] | None = None

    @property
    def features(self) -> Features:
        return self._with_photo(self._detected()[1], self.photo)

    def mirrored(self) -> Features:
        with self._lock:
            if self._flipped is None:
                flipped = self._mirror()
                if self.scale != 1.0:  # compared as it came, mirrored (made once: a copy costs as much as a pair)
                    flipped = self._with_photo(flipped, np.ascontiguousarray(self.photo[:, ::-1]))
                self._flipped = _done(flipped)
        return self._flipped.result()

    def _with_photo(self, features: Features, photo: np.ndarray) -> Features:
        """Compared as it came, not enlarged: enlarging adds no detail, only blur."""
        if self.scale == 1.0:
            return features
        return replace(features, rgb=photo, rgb_scale=self.scale)

    def _detected(self) -> tuple[Sequence[cv2.KeyPoint], Features]:
        with self._lock:
            self._plain = self._plain or _done(_detect(self.image))
        return self._plain.result()

    def _mirror(self) -> Features:
        return _mirror(self.image, self._detected()[0])


def _done(result: T) -> "Future[T]":
    future: Future[T] = Future()
    future.set_result(result)
    return future


def features_to_arrays(features: Features) -> dict[str, np.ndarray]:
    """A catalogue image's features as plain arrays, to store (no photo: a catalogue image keeps none)."""
    arrays = {
        "points": features.points,
        "size": np.array(features.size, dtype=np.int64),
        "thumb": features.thumb,
        "small": features.small,
    }
    if features.descriptors is not None:
        arrays["descriptors"] = features.descriptors
    return arrays


def features_from_arrays(arrays: dict[str, np.ndarray]) -> Features:
    width, height = (int(v) for v in arrays["size"])
    return Features(arrays["points"], arrays.get("descriptors"), (width, height), arrays["thumb"], arrays["small"])


class FeatureCache:
    """Catalogue images' features by content hash: in memory (least recently used evicted, about 25 KB each),
    then in the store written at ingest, else extracted from the stored copy (and stored)."""

    def __init__(
        self, load: Callable[[str], Image.Image], capacity: int = 4096, store: LocalFeatureStore | None = None
    ) -> None:
        self._load = load
        self._capacity = capacity
        self._store = store
        self._items: OrderedDict[str, Features] = OrderedDict()
        self._lock = Lock()

    def precompute(self, content_hash: str) -> None:
        """At ingest, once the stored copy is written: its features extracted and stored now, off any search."""
        if self._store is not None and self._store.load(content_hash) is None:
            # From the stored copy, re-read, not the decoded upload: the copy is re-encoded as JPEG, and a search
            # without a stored file extracts from that copy, so both ways give the very same features.
            self._store.save(content_hash, features_to_arrays(extract(self._load(content_hash))))

    def picture(self, content_hash: str) -> Image.Image:
        """The stored copy itself (OSError when it is missing)."""
        return self._load(content_hash)

    def get(self, content_hash: str) -> Features | None:
        """The image's features; None when its stored copy is missing or unreadable (the hit goes unverified)."""
        with self._lock:
            if (hit := self._items.get(content_hash)) is not None:
                self._items.move_to_end(content_hash)
                return hit
        stored = self._store.load(content_hash) if self._store is not None else None
        if stored is not None:
            features = features_from_arrays(stored)
        else:
            try:
                image = self._load(content_hash)  # outside the lock: other searches go on
            except (OSError, ValueError) as exc:  # PIL raises OSError subclasses for missing and broken files
                log.warning("cannot verify against image %s: %s", content_hash[:12], exc)
                return None
            features = extract(image)
            if self._store is not None:
                self._store.save(content_hash, features_to_arrays(features))
        with self._lock:
            self._items[content_hash] = features
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return features
