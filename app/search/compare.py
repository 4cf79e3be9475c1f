"""Dense comparison of an aligned pair: does the whole catalogue product look the same in the query, colours
included, or do the two share only a part (the same template in another colour, another print, another
glyph on the same frame)?

Local features find where the query and a catalogue image correspond (verify.py); they see edges, not
colours, and they are satisfied by one matching region. Here the query is warped onto the catalogue image
and every pixel of the two subjects is compared, after the best *global* colour change (hue turn, saturation
and value gains: what a filter, white balance or exposure does to a whole photo) and within a pixel of
misalignment. What disagrees is sorted into:

- occluders: regions of the query that cover the catalogue image's background as much as its product (a sale
  banner, a price badge, a sticker): they hide the product, they do not contradict it;
- differences: regions inside the product that do not agree (a skin tone, a hair colour, a clock's hands).

Measured on the OpenMoji catalogue's aligned pairs (scripts/evaluate.py, 1,500 pairs with >= 12 inliers):
with DIFFERENT_SHARE 0.01 and MIN_VISIBLE 0.5, 95% of true copies pass (every transform) and 6.5% of other
products do, most of them drawn identically to the query.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from app.search.crops import border_colour

SIDE = 128  # the catalogue image is compared at this many pixels on its longer side, or the query's resolution
SUBJECT = 30.0  # RGB distance from the border colour above which a pixel belongs to the subject
DIFFERENT = 24.0  # RGB distance, after the colour change and within a pixel, above which two pixels differ
# An occluder (a banner, a badge, a sticker) lies as much over the catalogue image's background as over its
# product, and reaches the edge of the image: more of a drawing inside the frame is a different product.
OCCLUDER_OVER_BACKGROUND = 0.25
EDGE = 0.04  # of the image's side
# A band across the whole photo at its edge (a sale banner) is an occluder even where the product fills the
# part of the frame it covers, and so leaves little background under it: a product's own part spans the
# frame from side to side only where the product does, and then ends short of the photo's edge.
BAND_SPAN = 0.9  # of the image's width (or height), the band's extent across it
BAND_FILL = 0.6  # of a row (or column) the band covers: its text over a white background does not differ
BAND_DEPTH = 0.25  # of the image's height (or width), at most: evaluate.py's banners take 12-20%
# The global colour changes a copy may have been through (HSV: hue turn in degrees, saturation and value
# gains); beyond them it is a product in another colour.
MAX_HUE_TURN = 60.0
HUE_BINS = 36  # the turns' histogram: 10 degrees a bin
HUE_NEAR = 20.0  # degrees either side of the commonest turn that its pixels' mean takes in
SATURATION_GAIN = (0.65, 1.5)
VALUE_GAIN = (0.8, 1.25)
MIN_PIXELS = 20
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 grey, which a saturation control blends toward
REFIT_RESIDUAL = 1.5 * DIFFERENT  # RGB distance beyond which a pixel is left out of the saturation refit
# The refit is tried where more than this share of the subjects differs after the HSV change: a saturation
# control moves every saturated colour, so whole regions differ; a detail that differs covers less.
REFIT_ABOVE = 0.02
REFIT_STEP = 2
REFIT_KEEPS = 0.5  # the refit is kept where it leaves at most this share of the pixels the HSV change left
EDGE_THRESHOLDS = (60, 150)  # Canny's, on grey levels
STROKE_TOLERANCE = 1.5  # pixels between an edge and its counterpart


@dataclass(frozen=True)
class Comparison:
    different: float  # share of the subjects' pixels that differ (occluders left out); 1.0 if colours are off
    largest: float  # the largest connected region of them, as a share of the subjects' pixels
    visible: float  # share of the catalogue product the query shows, not cut off and not occluded
    occluded: float  # share of the catalogue image covered by occluders
    colour_ok: bool  # a global colour change within the bounds explains the colours
    strokes: float  # share of either image's edges with no edge of the other within a pixel or so


NOT_COMPARED = Comparison(1.0, 1.0, 0.0, 0.0, False, 1.0)


def small_copy(rgb: np.ndarray) -> np.ndarray:
    """The catalogue image as compared: at most SIDE pixels on its longer side (cached with its features)."""
    scale = min(1.0, SIDE / max(rgb.shape[:2]))
    if scale == 1.0:
        return rgb
    size = (max(8, round(rgb.shape[1] * scale)), max(8, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def compare(query: np.ndarray, candidate: np.ndarray, size: tuple[int, int], transform: np.ndarray) -> Comparison:
    """`query`: RGB photo; `candidate`: small_copy of a catalogue image whose full size is `size` (w, h);
    `transform`: 2x3 affine from query pixels to full-size catalogue pixels."""
    # At the lower of the two resolutions: a small query warped up would blur every edge into a difference.
    query_step = float(np.sqrt(abs(np.linalg.det(transform[:, :2]))))  # catalogue pixels per query pixel
    if not 0.05 <= query_step <= 20:  # a degenerate fit: one image squeezed to a line or a dot
        return NOT_COMPARED
    scale = min(candidate.shape[1] / size[0], 1.0 / max(query_step, 1e-6))
    target = (max(8, round(size[0] * scale)), max(8, round(size[1] * scale)))
    catalogue = candidate
    if target != candidate.shape[1::-1]:  # averaged down (the flag by name: the third positional is dst)
        catalogue = cv2.resize(candidate, target, interpolation=cv2.INTER_AREA)
    to_target = transform * scale
    shrink = scale * query_step  # target pixels per query pixel, at most 1
    if (
        shrink < 0.9 and min(query.shape[:2]) * shrink >= 8
    ):  # warpAffine interpolates, it does not average: shrink first, or fine texture aliases
        query = cv2.resize(query, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        to_target = np.hstack([to_target[:, :2] / shrink, to_target[:, 2:]])
    warped = cv2.warpAffine(
        query.astype(np.float32), to_target, target, flags=cv2.INTER_LINEAR, borderValue=(np.nan,) * 3
    )
    valid = ~np.isnan(warped[..., 0])  # outside the query every channel is NaN alike, inside none
    warped = np.nan_to_num(warped)
    cat = catalogue.astype(np.float32)
    product = _distance(cat, border_colour(cat)) > SUBJECT
    if product.sum() < MIN_PIXELS or valid.sum() < MIN_PIXELS:
        return NOT_COMPARED
    shown = valid & (_distance(warped, border_colour(query.astype(np.float32))) > SUBJECT)
    subjects = (product & valid) | shown
    recoloured, colour_ok = _recolour(warped, catalogue, valid, subjects)
    differing = subjects & (_difference(cat, recoloured) > DIFFERENT)
    # A pixel or two of difference is noise (JPEG, resampling); what is left is a region.
    differing = cv2.morphologyEx(differing.astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)) > 0
    occluded, differences = _occluders(differing, product)
    seen = product & valid & ~occluded
    strokes = _strokes_differ(cat, recoloured, valid & ~occluded)
    counted = max((subjects & ~occluded).sum(), 1)
    share = float(differences.sum() / counted)
    count, _, stats, _ = cv2.connectedComponentsWithStats(differences.astype(np.uint8), connectivity=8)
    largest = float(stats[1:, cv2.CC_STAT_AREA].max() / counted) if count > 1 else 0.0
    return Comparison(
        different=round(share, 4) if colour_ok else 1.0,
        largest=round(largest, 4) if colour_ok else 1.0,
        visible=round(float(seen.sum() / product.sum()), 3),
        occluded=round(float(occluded.mean()), 3),
        colour_ok=colour_ok,
        strokes=round(strokes, 4),
    )


def _difference(catalogue: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Per pixel, how far the two pictures' colours are apart within a pixel of misalignment, and past the
    fringes a JPEG leaves along colour edges."""
    return np.minimum(
        _distance_to_local_range(catalogue, query),
        _distance_to_local_range(_colour_blurred(catalogue), _colour_blurred(query)),
    )


def _distance(rgb: np.ndarray, colour: np.ndarray) -> np.ndarray:
    difference = rgb - colour.astype(np.float32)
    return np.sqrt(cv2.transform(difference * difference, np.ones((1, 3), np.float32)))


def _recolour(
    warped: np.ndarray, catalogue: np.ndarray, valid: np.ndarray, subjects: np.ndarray
) -> tuple[np.ndarray, bool]:
    """The warped query after the global colour change that best explains the catalogue image's colours, and
    whether that change is within the bounds. The change is a photo editor's, in HSV: the hues turned and the
    saturations scaled (both found from every overlapping pixel coloured in both, background included: a tile
    that fills its frame is background to the subjects' mask, and a banner over it was all that was left to
    set the hue), the values scaled (from every lit overlapping pixel: a white background pins it, so a part
    lighter or darker than its counterpart, a skin tone, cannot pass for a brighter photo; the price is that a
    brightened photo of a product filling its whole frame reads as a difference, while darkened ones pass)."""
    # Each HSV plane kept as OpenCV gives it (uint8, contiguous) and brought to float64 only where arithmetic
    # needs it: the same values as converting the whole pictures first, with less to convert and to index.
    # float64: in float32 a hue turn of exactly 60° reads 60.0000076 and fails its own inclusive limit.
    query_h, query_s, query_v = cv2.split(cv2.cvtColor(np.clip(warped, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV))
    cat_hsv = cv2.cvtColor(catalogue, cv2.COLOR_RGB2HSV)
    cat_h, cat_s, cat_v = cv2.split(cat_hsv)
    lit = valid & (query_v > 40)
    value_gain = float(np.median(cat_v[lit] / query_v[lit].astype(np.float64))) if lit.sum() > MIN_PIXELS else 1.0
    coloured = valid & (query_s > 50) & (cat_s > 50) & (query_v > 50) & (cat_v > 50)
    hue_turn, saturation_gain = 0.0, 1.0  # OpenCV hue: 0..180 for 0..360 degrees
    if coloured.sum() > MIN_PIXELS:
        hue_turn = _hue_turn(cat_h[coloured] - query_h[coloured].astype(np.float64))
        saturation_gain = float(np.median(cat_s[coloured] / query_s[coloured].astype(np.float64)))
    changed = cv2.merge(
        [
            np.mod(query_h + hue_turn, 180).astype(np.uint8),
            np.clip(query_s * saturation_gain, 0, 255).astype(np.uint8),
            np.clip(query_v * value_gain, 0, 255).astype(np.uint8),
        ]
    )
    recoloured = cv2.cvtColor(changed, cv2.COLOR_HSV2RGB).astype(np.float32)
    within = (
        abs(hue_turn * 2) <= MAX_HUE_TURN
        and SATURATION_GAIN[0] <= saturation_gain <= SATURATION_GAIN[1]
        and VALUE_GAIN[0] <= value_gain <= VALUE_GAIN[1]
    )
    if within:
        recoloured = _saturation_refit(recoloured, warped, catalogue, cat_hsv, valid, subjects, hue_turn)
    return recoloured, within


def _hue_turn(turns: np.ndarray) -> float:
    """The turn most pixels share (OpenCV hue units, 0..180 a full turn): the circular mean of the turns near
    the commonest one. A mean of all of them is dragged by any part that differs: a red banner over a purple
    jacket turned a whole drawing 17 degrees, and every colour then differed. `turns`: differences of 8-bit
    hues, whole numbers from -179 to 179."""
    index = turns.astype(np.intp) + _TURNS.offset
    peak = int(np.argmax(np.bincount(_TURNS.bins[index], minlength=HUE_BINS)))
    near = _TURNS.near[peak][index]
    return float(np.angle(np.mean(_TURNS.unit[index[near]])) * 90 / np.pi)


class _TurnTables:
    """Per possible turn (-179..179 hue units), what _hue_turn needs of it, made once: its histogram bin, its unit
    vector, and per bin whether it lies within HUE_NEAR of that bin's centre. Looked up instead of computed for
    each pixel: the same values as the histogram, angle and exponential of each pixel's turn (tests check),
    in a seventh of the time."""

    def __init__(self) -> None:
        self.offset = 179
        angles = np.arange(-179, 180, dtype=np.float64) * (np.pi / 90)
        edges = np.linspace(0, 2 * np.pi, HUE_BINS + 1)  # numpy's histogram's edges for this range
        wrapped = np.mod(angles, 2 * np.pi)
        # As np.histogram bins: each edge opens its bin, and the last bin also holds the last edge.
        self.bins = np.minimum(np.searchsorted(edges, wrapped, side="right") - 1, HUE_BINS - 1)
        self.unit = np.exp(1j * angles)
        centres = (edges[:-1] + np.pi / HUE_BINS + np.pi) % (2 * np.pi) - np.pi
        self.near = np.abs(np.angle(np.exp(1j * (angles[None, :] - centres[:, None])))) <= HUE_NEAR * np.pi / 180


_TURNS = _TurnTables()


def _turned(hsv: np.ndarray, hue_turn: float) -> np.ndarray:
    """The RGB picture of `hsv` (OpenCV's, float) with its hues turned by `hue_turn` (OpenCV units)."""
    turned = hsv.copy()
    turned[..., 0] = np.mod(hsv[..., 0] + hue_turn, 180)
    return cv2.cvtColor(turned.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)


def _saturation_refit(
    recoloured: np.ndarray,
    warped: np.ndarray,
    catalogue: np.ndarray,
    cat_hsv: np.ndarray,
    valid: np.ndarray,
    subjects: np.ndarray,
    hue_turn: float,
) -> np.ndarray:
    """The query recoloured the other way a photo editor's controls change a photo: its saturation control
    blends each pixel with its own grey and its brightness control scales it, after any hue turn. Blending
    moves a saturated colour's HSV value along with its saturation while white stays white, which no global HSV
    gain explains: on OpenMoji's colour-shifted copies (scripts/evaluate.py) a whale's body still differed over
    18% of it. So the catalogue image is turned back by the hue turn, `gain * (grey + blend * (rgb - grey))` of
    the query fitted to it by least squares (then again without what the first fit leaves far off: a banner, a
    part that differs), and the result turned again. Kept within the HSV gains' bounds, where fewer differ."""
    step = slice(None, None, REFIT_STEP)  # a grid of every other pixel fits two parameters as well as all
    target, shown = catalogue[step, step].astype(np.float32), subjects[step, step]
    before = int((shown & (_distance(recoloured[step, step], target) > DIFFERENT)).sum())
    if before < max(MIN_PIXELS, REFIT_ABOVE * shown.sum()):
        return recoloured  # most copies (the HSV change explains them) and siblings differing in a detail
    turned_back = _turned(cat_hsv[step, step].astype(np.float64), -hue_turn)
    query, overlap = np.clip(warped[step, step], 0, 255), valid[step, step]
    grey = (query @ LUMA)[..., None]
    chroma = query - grey  # the model: target = gain * grey + blend * chroma, least squares over pixels kept
    keep = overlap
    for _ in range(2):
        weight = keep[..., None].astype(np.float32)
        wg, wc = weight * grey, weight * chroma
        cross = float(np.sum(wc * grey))
        normal = [[3 * float(np.sum(wg * grey)), cross], [cross, float(np.sum(wc * chroma))]]
        try:
            solved = np.linalg.solve(normal, [float(np.sum(wg * turned_back)), float(np.sum(wc * turned_back))])
            gain, blend = float(solved[0]), float(solved[1])  # Python floats: float32 arrays stay float32
        except np.linalg.LinAlgError:  # no colour at all: nothing for a saturation control to explain
            return recoloured
        residual = gain * grey + blend * chroma - turned_back
        keep = overlap & (np.einsum("ijk,ijk->ij", residual, residual) < REFIT_RESIDUAL**2)
        if keep.sum() < MIN_PIXELS:
            return recoloured
    if not (VALUE_GAIN[0] <= gain <= VALUE_GAIN[1] and SATURATION_GAIN[0] <= blend / gain <= SATURATION_GAIN[1]):
        return recoloured
    # Judged on the grid, as it was fitted: kept only where it leaves clearly fewer pixels differing (a JPEG's
    # fringes differ alike either way, and a part in another colour stays a part).
    after = int((shown & (_distance(_blended_and_turned(query, gain, blend, hue_turn), target) > DIFFERENT)).sum())
    if after > REFIT_KEEPS * before:
        return recoloured
    return _blended_and_turned(np.clip(warped, 0, 255), gain, blend, hue_turn)


def _blended_and_turned(rgb: np.ndarray, gain: float, blend: float, hue_turn: float) -> np.ndarray:
    """`rgb` through the fitted saturation and brightness controls, then the hue turn."""
    grey = (rgb @ LUMA)[..., None]
    blended = np.clip(gain * grey + blend * (rgb - grey), 0, 255).astype(np.uint8)
    return _turned(cv2.cvtColor(blended, cv2.COLOR_RGB2HSV).astype(np.float64), hue_turn)


def _strokes_differ(catalogue: np.ndarray, query: np.ndarray, where: np.ndarray) -> float:
    """The larger of the shares of each image's edges (within `where`) that the other lacks: a glyph, a clock's
    hands or a print differ in thin strokes, too few pixels to weigh as a region but many edges."""
    greys = [cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY) for rgb in (catalogue, query)]
    edges = [cv2.Canny(grey, *EDGE_THRESHOLDS) > 0 for grey in greys]
    # Looked for at half the thresholds: a faint edge (two colours of about the same lightness) is found in one
    # copy and missed in the other by the noise of JPEG alone; what the other copy lacks entirely is a stroke.
    faint = [cv2.Canny(grey, *(t / 2 for t in EDGE_THRESHOLDS)) > 0 for grey in greys]
    inner = cv2.erode(where.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # not the overlap's own border
    margin = max(2, round(EDGE * max(where.shape)))  # nor the frame's: a pasted photo's edge is not a stroke
    inner[:margin], inner[-margin:], inner[:, :margin], inner[:, -margin:] = False, False, False, False
    shares = []
    for mine, theirs in zip(edges, faint[::-1], strict=True):
        counted = mine & inner
        if counted.sum() < MIN_PIXELS:
            return 0.0
        near = cv2.distanceTransform((~theirs).astype(np.uint8), cv2.DIST_L2, 3) <= STROKE_TOLERANCE
        shares.append(float((counted & ~near).sum() / counted.sum()))
    return max(shares)


def _distance_to_local_range(catalogue: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Per catalogue pixel, the RGB distance to the range of colours the query takes around it (per channel, the
    lowest and highest over its 3x3 neighbourhood). Alignment is good to about a pixel, and rarely to a whole
    one: an edge shifted by a fraction of a pixel, or resampled, gives pixels *between* the two sides' colours,
    which none of the query's neighbouring pixels matches but their range holds."""
    low = cv2.erode(query, _NEIGHBOURHOOD, borderType=cv2.BORDER_REPLICATE)
    high = cv2.dilate(query, _NEIGHBOURHOOD, borderType=cv2.BORDER_REPLICATE)
    # In place: a new array per step cost five times the arithmetic (65 against 366 µs at 128 px).
    below, above = np.subtract(low, catalogue, out=low), np.subtract(catalogue, high, out=high)
    outside = np.maximum(np.maximum(below, above, out=below), 0, out=below)
    return np.sqrt(cv2.transform(np.multiply(outside, outside, out=outside), np.ones((1, 3), np.float32)))


_NEIGHBOURHOOD = np.ones((3, 3), np.uint8)


def _colour_blurred(rgb: np.ndarray) -> np.ndarray:
    """The picture with its colour (not its lightness) blurred over a pixel or so. A JPEG keeps colour at half
    resolution, which fringes every sharp colour edge of the stored copy with a pixel of mixed colour: a pixel
    that differs as it is, but not once both pictures' colours are blurred alike, is that fringe. Inside a
    region the colour is unchanged, and lightness, where most detail lies, stays sharp."""
    ycrcb = cv2.cvtColor(np.clip(rgb, 0, 255), cv2.COLOR_RGB2YCrCb)
    ycrcb[..., 1:] = cv2.blur(ycrcb[..., 1:], (3, 3))
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def _occluders(differing: np.ndarray, product: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split differing regions into occluders (over the catalogue background as much as over its product, and
    reaching the image's edge) and differences. Occluders are widened by a pixel: their edges too."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(differing.astype(np.uint8), connectivity=8)
    area = stats[:, cv2.CC_STAT_AREA]
    over_background = np.bincount(labels[~product], minlength=count)
    height, width = differing.shape
    margin = max(1, round(EDGE * max(height, width)))
    edge = np.ones_like(differing)
    edge[margin:-margin, margin:-margin] = False
    at_edge = np.bincount(labels[edge], minlength=count) > 0
    spread = (over_background >= OCCLUDER_OVER_BACKGROUND * area) & at_edge  # per region: a badge, a sticker
    spread[0] = False  # label 0: everything that does not differ
    covered = spread[labels] | _bands(labels, stats, margin)
    occluded = cv2.dilate(covered.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return occluded, differing & ~occluded


def _bands(labels: np.ndarray, stats: np.ndarray, margin: int) -> np.ndarray:
    """Where a differing region lies as a band across the image at an edge (a sale banner): a region spanning
    BAND_SPAN of the width from the top or bottom edge (or of the height from a side), and of it the rows (or
    columns) from that edge inward that it fills BAND_FILL of, as long as they run no deeper than BAND_DEPTH of
    the image. What hangs off the band (a part of the product in another colour touching it) stays a
    difference, and so does a band too deep to be a banner."""
    height, width = labels.shape
    band = np.zeros(labels.shape, bool)
    for k in range(1, len(stats)):
        x, y, w, h = (int(v) for v in stats[k, :4])
        # (axis averaged over: 1 for rows, 0 for columns; where the region starts and how far it extends; the
        # image's size that way) for each way it spans the image across
        ways = [(1, y, h, height)] if w >= BAND_SPAN * width else []
        ways += [(0, x, w, width)] if h >= BAND_SPAN * height else []
        if not ways:
            continue
        region = labels == k  # once per region, whichever ways it spans
        for axis, start, extent, side in ways:
            if start < margin:  # from the near edge inward
                lines = list(range(start, start + extent))
            elif start + extent > side - margin:  # from the far edge inward
                lines = list(range(start + extent - 1, start - 1, -1))
            else:
                continue
            filled = region.mean(axis=axis) >= BAND_FILL
            depth = next((n for n, line in enumerate(lines) if not filled[line]), len(lines))
            if 0 < depth <= BAND_DEPTH * side:
                keep = np.zeros(side, bool)
                keep[lines[:depth]] = True
                band |= region & (keep[:, None] if axis == 1 else keep[None, :])
    return band
