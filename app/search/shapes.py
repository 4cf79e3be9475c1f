"""Alignment of products too plain for keypoints: a flag's stripes, a triangle, a plain mug.

Local features need corners; flat artwork with soft outlines has a handful (Twemoji's flags: 0-5 at 256 px), so
its copies never verify and stay `similar` however exact. Such a catalogue image is instead found in the query
by template matching of the two pictures' edges (gradient magnitude: a recoloured copy keeps its edges where
its grey levels change), over a range of scales, as it is and mirrored, the catalogue image inside the query
(framed, padded, in a screenshot) or the query inside the catalogue image (cropped). The alignment found is
then judged like any other (compare.py): only a whole product that agrees becomes `identical`.

A turned copy is searched for at one angle more: the turn that best lines up the two pictures' histograms of
edge orientation (a flag's stripes turned by 15 degrees turn every edge by 15), where it is clear of upright.
Searching each angle would multiply the cost.
"""

import cv2
import numpy as np

SIDE = 64  # pixels on the query's longer side while matching
# The catalogue image's longer side in query pixels, as a share of the query's longer side: a padded or framed
# copy shows it at 0.5-0.8, a resized one at 1, a cropped one at 1.2-1.5.
SCALES = tuple(float(s) for s in np.geomspace(0.45, 1.6, 14))
MIN_SCORE = 0.6  # normalised correlation of the edges below which no alignment is reported
MIN_TEMPLATE = 12  # pixels: a smaller template matches anything
# A place on the picture whose edges vary less than this share of the template's (standard deviation) is blank
# there, and matches nothing: a drawing's own place varies about as much as the drawing.
FLAT_WINDOW = 0.1
ORIENTATION_BINS = 90  # 2 degrees each, over half a turn: an edge's direction, whichever side is darker
MAX_TURN = 30  # degrees either way: evaluate.py's turned copies are turned 8-25
MIN_TURN = 4  # degrees: a smaller turn is left to the refinement of the upright alignment


def edges(rgb: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the grey picture, blurred a pixel: where its outlines and colour borders lie."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    magnitude = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    return cv2.GaussianBlur(magnitude, (3, 3), 0)


def align(query: np.ndarray, catalogue: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float] | None:
    """The 2x3 transform from `query` pixels (RGB, as it came) to full-size catalogue pixels (`catalogue`: its
    small copy, `size`: its full width and height) that best lines up their edges, and its score; None when no
    scale scores MIN_SCORE."""
    factor = SIDE / max(query.shape[:2])
    height, width = round(query.shape[0] * factor), round(query.shape[1] * factor)
    if min(height, width) < MIN_TEMPLATE:  # a strip a few pixels thin: nothing fits inside it, nor it inside
        return None
    small = cv2.resize(query, (width, height), interpolation=cv2.INTER_AREA)
    views = _views(edges(small), edges(_resized(catalogue, SIDE)))
    best: tuple[float, np.ndarray] | None = None
    for scale in SCALES:
        shelf = _shelf(catalogue, scale * SIDE)
        if shelf is None:
            continue
        for picture, to_view in views:
            found = _match(picture, *shelf)
            if found is not None and (best is None or found[0] > best[0]):
                best = (found[0], found[1] @ to_view)
    if best is None or best[0] < MIN_SCORE:
        return None
    score, to_catalogue = best
    to_small = _refined(query, catalogue, to_catalogue @ np.diag([factor, factor, 1.0]))
    to_full = np.diag([size[0] / catalogue.shape[1], size[1] / catalogue.shape[0], 1.0])
    return (to_full @ to_small)[:2], score


def _refined(query: np.ndarray, catalogue: np.ndarray, to_small: np.ndarray) -> np.ndarray:
    """The coarse alignment (a pixel of 64 is 4 of a 256 px picture: every outline would differ) refined to
    a fraction of a pixel: ECC between the two pictures' edges at the catalogue's small size, as an affine."""
    shelf = edges(catalogue)
    # ECC's warp maps the template's pixels (the catalogue's) to the input's (the query's, brought to about the
    # catalogue's resolution so both blur alike).
    factor = min(1.0, 1.0 / max(float(np.sqrt(abs(np.linalg.det(to_small[:2, :2])))), 1e-6))
    scaled = cv2.resize(query, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) if factor < 1 else query
    to_small_scaled = to_small @ np.diag([1 / factor, 1 / factor, 1.0])
    warp = np.linalg.inv(to_small_scaled)[:2].astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
    try:
        _, warp = cv2.findTransformECC(shelf, edges(scaled), warp, cv2.MOTION_AFFINE, criteria, None, 3)
    except cv2.error:  # did not converge: the coarse alignment stands
        return to_small
    refined = np.linalg.inv(np.vstack([warp, [0, 0, 1]]).astype(np.float64))
    return refined @ np.diag([factor, factor, 1.0])


def _views(plain: np.ndarray, catalogue: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The query's edges as matched: as they came and mirrored, each also turned upright where it looks turned;
    with the 3x3 transform from the query's pixels to each view's."""
    mirror = _mirror(plain.shape[1])
    views = [(plain, np.eye(3)), (np.ascontiguousarray(plain[:, ::-1]), mirror)]
    for picture, to_view in list(views):
        angle = turn(picture, catalogue)
        if abs(angle) >= MIN_TURN:
            turned, to_turned = _turned(picture, -angle)
            views.append((turned, to_turned @ to_view))
    return views


def turn(query_edges: np.ndarray, catalogue_edges: np.ndarray) -> float:
    """Degrees by which the query looks turned counter-clockwise (as shown) from the catalogue picture: the
    shift (within MAX_TURN) of one histogram of edge orientation along the other that correlates them best, to
    a fraction of a bin."""
    query, catalogue = _orientations(query_edges), _orientations(catalogue_edges)
    width = 180 / ORIENTATION_BINS
    reach = int(MAX_TURN / width)
    shifts = np.arange(-reach - 1, reach + 2)
    scores = np.array([float(np.dot(np.roll(catalogue, int(shift)), query)) for shift in shifts])
    if not scores.any():
        return 0.0  # no edges on one side: nothing turned
    peak = int(np.argmax(scores[1:-1])) + 1
    below, at, above = scores[peak - 1 : peak + 2]
    curve = below - 2 * at + above
    offset = 0.5 * (below - above) / curve if curve < 0 else 0.0  # the parabola's top through the three
    # Image rows grow downwards, so an edge turned counter-clockwise as shown has a smaller angle.
    return -float(shifts[peak] + offset) * width


def _orientations(magnitude: np.ndarray) -> np.ndarray:
    """Histogram of the edges' directions (mod 180 degrees), weighted by their strength."""
    blurred = magnitude.astype(np.float32)
    dx, dy = cv2.Sobel(blurred, cv2.CV_32F, 1, 0), cv2.Sobel(blurred, cv2.CV_32F, 0, 1)
    # The gradient of the edge map points across each edge, as the picture's own gradient does.
    strength, angle = cv2.cartToPolar(dx, dy, angleInDegrees=True)
    bins = (angle.ravel() % 180 / (180 / ORIENTATION_BINS)).astype(np.int64) % ORIENTATION_BINS
    return np.bincount(bins, weights=strength.ravel(), minlength=ORIENTATION_BINS)


def _turned(picture: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The picture turned counter-clockwise by `angle` degrees on a canvas that holds all of it, blank outside;
    and the 3x3 transform from its pixels to the turned picture's."""
    height, width = picture.shape
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    cos, sin = abs(rotation[0, 0]), abs(rotation[0, 1])
    size = (round(height * sin + width * cos), round(height * cos + width * sin))
    rotation[:, 2] += (size[0] - width) / 2, (size[1] - height) / 2
    turned = cv2.warpAffine(picture, rotation, size, flags=cv2.INTER_LINEAR, borderValue=0)
    return turned, np.vstack([rotation, [0.0, 0.0, 1.0]])


def _resized(catalogue: np.ndarray, longer: float) -> np.ndarray:
    """The catalogue image at `longer` pixels on its longer side (at least a pixel each way)."""
    k = longer / max(catalogue.shape[:2])
    size = (max(1, round(catalogue.shape[1] * k)), max(1, round(catalogue.shape[0] * k)))
    return cv2.resize(catalogue, size, interpolation=cv2.INTER_AREA)


def _mirror(width: int) -> np.ndarray:
    """The query's x mirrored: x' = width - 1 - x."""
    return np.array([[-1.0, 0, width - 1], [0, 1.0, 0], [0, 0, 1.0]])


def _shelf(catalogue: np.ndarray, longer: float) -> tuple[np.ndarray, float] | None:
    """The catalogue image's edges at `longer` pixels on its longer side, and that scale; None if too small."""
    small = _resized(catalogue, longer)
    if min(small.shape[:2]) < MIN_TEMPLATE:
        return None
    return edges(small), longer / max(catalogue.shape[:2])


def _flat_windows(image: np.ndarray, shape: tuple[int, ...], floor: float) -> np.ndarray:
    """Per placement of a template of `shape` on `image` (as matchTemplate's result is laid out), whether the
    picture under it varies by less than `floor` (standard deviation)."""
    height, width = shape[:2]
    sums, squares = cv2.integral2(image, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)

    def windowed(table: np.ndarray) -> np.ndarray:
        return table[height:, width:] - table[:-height, width:] - table[height:, :-width] + table[:-height, :-width]

    count = height * width
    variance = windowed(squares) / count - (windowed(sums) / count) ** 2
    return variance < floor**2


def _match(query_edges: np.ndarray, shelf: np.ndarray, k: float) -> tuple[float, np.ndarray] | None:
    """The query's edges matched with the catalogue's at scale `k`, whichever lies inside the other: (score, 3x3
    transform from the query's matching pixels to the catalogue's small copy), or None where neither fits."""
    height, width = shelf.shape
    qh, qw = query_edges.shape
    if height <= qh and width <= qw:  # the catalogue image inside the query: query point p is at (p - at) / k
        image, template, sign = query_edges, shelf, -1.0
    elif height >= qh and width >= qw and min(qh, qw) >= MIN_TEMPLATE:  # the query inside it: (p + at) / k
        image, template, sign = shelf, query_edges, 1.0
    else:
        return None
    spread = float(template.std())
    if spread < 1e-3 or image.std() < 1e-3:
        return None  # nothing drawn: every place matches as well
    scores = cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED)
    # Where the picture under the template is blank, the correlation divides nothing by nearly nothing: OpenCV
    # then reports anything up to 1.0, and which depends on how its threads split the work (a flag's crop scored
    # 1.0 or 0.89 from one run to the next). Such a place matches no drawing.
    scores[_flat_windows(image, template.shape, FLAT_WINDOW * spread)] = 0.0
    _, score, _, (x, y) = cv2.minMaxLoc(scores)
    transform = np.array([[1 / k, 0, sign * x / k], [0, 1 / k, sign * y / k], [0, 0, 1.0]])
    return float(score), transform
