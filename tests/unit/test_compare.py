"""The dense comparison of aligned pairs: copies pass however recoloured as a whole or partly covered; a part
in another colour, another glyph on the same frame, a part alone or a product in another colour do not."""

import colorsys
import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from app.search import compare as compare_module
from app.search.compare import NOT_COMPARED, compare, small_copy
from app.search.verify import MAX_REGION, MIN_VISIBLE

SIDE = 256
IDENTITY = np.array([[1.0, 0, 0], [0, 1.0, 0]])


def drawing(skin=(250, 204, 60), glyph="1", frame=(90, 140, 220)) -> Image.Image:
    """A flat, outlined drawing like a catalogue's product art: a framed panel, a face, a glyph."""
    image = Image.new("RGB", (SIDE, SIDE), "white")
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((28, 28, 228, 228), radius=24, fill=frame, outline="black", width=5)
    draw.ellipse((60, 50, 150, 140), fill=skin, outline="black", width=4)
    draw.ellipse((82, 80, 94, 92), fill="black")
    draw.ellipse((116, 80, 128, 92), fill="black")
    draw.arc((80, 95, 130, 125), 20, 160, fill="black", width=4)
    draw.rectangle((120, 120, 220, 220), fill="white", outline="black", width=4)  # a label with a big glyph
    strokes = {"1": [(170, 135, 170, 205)], "7": [(140, 138, 200, 138), (200, 138, 160, 205)]}[glyph]
    for stroke in strokes:
        draw.line(stroke, fill="black", width=12)
    return image


def arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def compared(query: Image.Image, catalogue: Image.Image, transform: np.ndarray = IDENTITY):
    rgb = arr(catalogue)
    return compare(arr(query), small_copy(rgb), (rgb.shape[1], rgb.shape[0]), transform)


def shifted_colours(image: Image.Image, hue_degrees: float, saturation: float, value: float) -> Image.Image:
    hsv = np.asarray(image.convert("HSV")).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue_degrees * 256 / 360) % 256
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
    rgb = Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")
    return ImageEnhance.Brightness(rgb).enhance(value)


def test_a_smaller_copy_is_the_same_throughout():
    product = drawing()
    half = product.resize((128, 128))
    result = compared(half, product, IDENTITY * np.array([[2.0], [2.0]]))  # query pixels are twice as large
    assert result.colour_ok and result.largest <= MAX_REGION / 3 and result.visible > 0.95 and result.occluded < 0.01


def test_a_colour_between_the_neighbours_colours_does_not_differ_and_one_beyond_them_does_by_its_distance():
    query = np.zeros((5, 5, 3), np.float32)
    query[:, 3:] = (200, 100, 50)  # an edge: black, then orange
    catalogue = query.copy()
    catalogue[2, 2] = (120, 60, 30)  # the edge a fraction of a pixel further: a colour between the two
    catalogue[2, 0] = (0, 30, 40)  # beyond black by (0, 30, 40)
    distance = compare_module._distance_to_local_range(catalogue, query)
    assert distance[2, 2] == 0 and distance[2, 0] == pytest.approx(50.0)
    assert not distance[[0, 1, 3, 4]].any() and query[2, 0].tolist() == [0, 0, 0]  # the query is left as it was


@pytest.mark.parametrize("side", [90, 106, 113])
def test_a_copy_resized_so_its_edges_fall_between_pixels_is_the_same_throughout(side):
    """Downscaled by an awkward factor, an outline lands a fraction of a pixel off and its pixels take colours
    between the outline's and the fill's, which no neighbouring pixel of the catalogue image has: judged against
    the nearest neighbour, 8% of the drawing differed along its outlines (largest region 2.2%)."""
    product = drawing()
    small = product.resize((side, side), Image.Resampling.BICUBIC)
    result = compared(small, product, IDENTITY * np.array([[SIDE / side], [SIDE / side]]))
    assert result.different < 0.01 and result.largest <= MAX_REGION / 3, result


@pytest.mark.parametrize(("hue", "saturation", "value"), [(30, 1.2, 0.9), (-45, 0.8, 0.95), (0, 1.0, 0.85)])
def test_a_photo_recoloured_as_a_whole_is_the_same(hue, saturation, value):
    product = drawing()
    result = compared(shifted_colours(product, hue, saturation, value), product)
    assert result.colour_ok and result.largest <= MAX_REGION


@pytest.mark.parametrize(
    ("hue", "saturation", "brightness"), [(20, 0.7, 1.05), (0, 1.3, 1.0), (40, 1.25, 0.9), (30, 1.3, 0.95)]
)
def test_a_photo_through_a_photo_editors_saturation_control_is_the_same(monkeypatch, hue, saturation, brightness):
    """A saturation control blends each pixel with its grey: a saturated colour's HSV value moves with its
    saturation while white stays white, so no global HSV gain explains it; the refit does."""
    product = drawing()
    turned = shifted_colours(product, hue, 1.0, 1.0)
    edited = ImageEnhance.Brightness(ImageEnhance.Color(turned).enhance(saturation)).enhance(brightness)
    result = compared(edited, product)
    assert result.colour_ok and result.largest <= MAX_REGION, result
    monkeypatch.setattr(compare_module, "_saturation_refit", lambda recoloured, *_: recoloured)
    assert compared(edited, product).largest > MAX_REGION  # the HSV gains alone leave the panel differing


@pytest.mark.parametrize(
    "variant",
    [
        {"skin": (120, 80, 50)},  # the same template, another skin tone
        {"glyph": "7"},  # the same frame, another glyph
        {"frame": (220, 90, 90)},  # the same drawing, its panel in another colour
    ],
)
def test_a_part_that_differs_is_a_difference(variant):
    result = compared(drawing(**variant), drawing())
    assert result.largest > MAX_REGION, result


def test_a_part_turned_grey_is_a_difference_not_a_failed_colour_change():
    """The colour change is found from the pixels coloured in both: a panel gone grey says nothing about the
    hue turn or the saturation gain of the rest, it is a region that differs."""
    result = compared(drawing(frame=(150, 150, 150)), drawing())
    assert result.colour_ok and result.largest > MAX_REGION, result
    assert 0.0 < result.different < 1.0, result  # a share of the subjects, to four places


def test_a_blank_catalogue_image_is_not_compared():
    """No product to compare (nothing differs from the border colour): no verdict either way."""
    assert compared(drawing(), Image.new("RGB", (SIDE, SIDE), "white")) == NOT_COMPARED


def test_the_whole_product_in_another_colour_is_beyond_a_colour_change():
    product = drawing()
    result = compared(shifted_colours(product, 150, 1.0, 1.0), product)
    assert not result.colour_ok and result.different == 1.0


def test_a_banner_and_a_badge_hide_the_product_without_contradicting_it():
    product = drawing()
    covered = product.copy()
    draw = ImageDraw.Draw(covered)
    draw.rectangle((0, 0, SIDE, 40), fill=(230, 30, 30))
    draw.text((10, 10), "HOT SALE -50%", fill="white")
    draw.ellipse((200, 200, 252, 252), fill=(255, 210, 0))
    result = compared(covered, product)
    assert result.occluded > 0.02 and result.largest <= MAX_REGION and result.visible >= MIN_VISIBLE


def test_more_drawing_inside_the_frame_is_a_difference_not_an_occluder():
    """An extra part over the catalogue image's background, away from its edges (a second object beside the
    product): not a banner or a badge."""
    product = drawing()
    more = product.copy()
    ImageDraw.Draw(more).ellipse((160, 40, 215, 95), fill=(40, 160, 60), outline="black", width=4)
    result = compared(more, product)
    assert result.occluded < 0.01 and result.largest > MAX_REGION


def test_a_query_showing_a_part_alone_shows_too_little_of_the_product():
    product = drawing()
    corner = product.crop((0, 0, 110, 110))  # the face alone
    result = compared(corner, product)
    assert result.visible < MIN_VISIBLE


def test_a_degenerate_alignment_is_not_compared():
    product = drawing()
    squashed = np.array([[1.0, 0, 0], [0, 0.001, 0]])
    assert compared(product, product, squashed).different == 1.0


def test_colours_are_compared_in_hsv_as_a_photo_editor_changes_them():
    """The hue turn is the one a photo editor applies: a copy turned 40 degrees passes, while the same template
    with one part's colour turned does not (the check above), nor with every colour turned 150 degrees."""
    r, g, b = colorsys.hsv_to_rgb(0.1, 0.8, 0.9)
    product = drawing(skin=(round(r * 255), round(g * 255), round(b * 255)))
    assert compared(shifted_colours(product, 40, 1.0, 1.0), product).colour_ok


# Synthetic flat images, their colours given in OpenCV's HSV (hue 0..180 for 0..360 degrees), so that a colour
# change is known to the unit.


def flat(hsv_colours, side: int = 64, background=(255, 255, 255)) -> np.ndarray:
    """A square of one colour filling most of a `side` x `side` image on `background`; `hsv_colours` a list of
    (share of the square's columns, (h, s, v)) from the left, or a single (h, s, v)."""
    if isinstance(hsv_colours[0], int):
        hsv_colours = [(1.0, hsv_colours)]
    image = np.zeros((side, side, 3), np.uint8)
    image[:] = background
    low, high = side // 10, side - side // 10
    left = low
    for share, hsv in hsv_colours:
        right = min(high, left + round(share * (high - low)))
        image[low:high, left:right] = cv2.cvtColor(np.uint8([[hsv]]), cv2.COLOR_HSV2RGB)[0, 0]
        left = right
    return image


def flat_compared(query: np.ndarray, catalogue: np.ndarray):
    return compare(query, small_copy(catalogue), (catalogue.shape[1], catalogue.shape[0]), IDENTITY)


@pytest.mark.parametrize(
    ("query", "catalogue", "within"),
    [
        # the hue turned by 59.6 degrees (a mean of 30 and 29 units), inside the 60 degree limit, and 62 past it
        ((40, 200, 220), [(0.8, (70, 200, 220)), (0.2, (69, 200, 220))], True),
        ((70, 200, 220), [(0.8, (40, 200, 220)), (0.2, (41, 200, 220))], True),
        ((40, 200, 220), (71, 200, 220), False),
        ((71, 200, 220), (40, 200, 220), False),
        # saturation gains: 1.5 and 0.66 inside, 1.52 and 0.64 past
        ((100, 100, 220), (100, 150, 220), True),
        ((100, 100, 220), (100, 152, 220), False),
        ((100, 200, 153), (100, 132, 153), True),
        ((100, 200, 153), (100, 128, 153), False),
        # value gains (the square fills most of the frame, so it outweighs the white background): 1.25 and 0.8
        # inside, 1.26 and 0.79 past
        ((100, 200, 160), (100, 200, 200), True),
        ((100, 200, 160), (100, 200, 202), False),
        ((100, 200, 250), (100, 200, 200), True),
        ((100, 200, 250), (100, 200, 198), False),
    ],
)
def test_a_colour_change_is_within_its_bounds_up_to_their_limits(query, catalogue, within):
    result = flat_compared(flat(query, side=80), flat(catalogue, side=80))
    assert result.colour_ok is within, result
    if not within:
        assert result.different == 1.0 and result.largest == 1.0


@pytest.mark.parametrize(
    ("query", "catalogue"),
    [((40, 200, 220), (70, 200, 220)), ((0, 200, 153), (0, 130, 153))],
    ids=["hue-turn-60-degrees", "saturation-gain-0.65"],
)
def test_a_colour_change_exactly_at_its_limit_is_within(query, catalogue):
    assert flat_compared(flat(query), flat(catalogue)).colour_ok


@pytest.mark.parametrize(("red", "differs"), [(255 - 24, False), (255 - 25, True)])
def test_white_stays_white_through_the_colour_change(red, differs):
    """Unsaturated pixels keep their saturation of 0 (no hue leaks into white): a white part DIFFERENT away from
    its counterpart in the catalogue image is still the same, one a unit further is a difference."""
    query = flat((0, 0, 255), background=(0, 0, 0))
    catalogue = query.copy()
    catalogue[query[..., 0] == 255] = (red, 255, 255)
    result = flat_compared(query, catalogue)
    assert result.colour_ok
    if differs:
        assert result.different > 0.9 and result.largest > 0.9, result
    else:
        assert result.different == 0.0 and result.largest == 0.0, result


@pytest.mark.parametrize("banner", [(30, 30, 30), (200, 20, 50)])
def test_a_banner_over_a_coloured_background_is_an_occluder(banner):
    """The background's colour is the median of the four edges, channel by channel: on a blue background the
    product is the white panel alone, and a banner across the top lies over the background. A vivid one (red
    over blue: a letter tile filling its frame) once set the colour change, which was found from the subjects'
    pixels alone, the banner's among them and the blue not: its hue turn of 139 degrees failed every copy."""
    catalogue = Image.new("RGB", (SIDE, SIDE), (40, 120, 200))
    ImageDraw.Draw(catalogue).rectangle((70, 70, 186, 186), fill="white", outline="black", width=5)
    query = catalogue.copy()
    ImageDraw.Draw(query).rectangle((0, 0, SIDE, 40), fill=banner)
    ImageDraw.Draw(query).text((10, 10), "HOT SALE -50%", fill="white")
    result = compared(query, catalogue)
    assert result.colour_ok, result
    assert result.occluded > 0.05 and result.largest <= MAX_REGION and result.visible > 0.95, result
    assert compared(catalogue, catalogue).visible == 1.0


def test_a_banner_over_the_product_alone_is_a_difference():
    """An occluder lies over the background as much as over the product: a bar across the product only (away
    from the background, though it reaches the image's edge through it) is not one."""
    catalogue = Image.new("RGB", (SIDE, SIDE), "white")
    ImageDraw.Draw(catalogue).rectangle((0, 60, SIDE, 196), fill=(90, 140, 220))
    query = catalogue.copy()
    ImageDraw.Draw(query).rectangle((0, 100, SIDE, 150), fill=(230, 30, 30))
    result = compared(query, catalogue)
    assert result.occluded < 0.01 and result.largest > MAX_REGION, result


@pytest.mark.parametrize("side", ["bottom", "left"])
def test_a_band_across_the_photo_at_its_edge_is_an_occluder_where_the_product_fills_that_part(side):
    """A sale banner across the bottom of a product that reaches the bottom of its frame (a person's jacket) has
    almost no background under it, yet spans the photo from side to side at its edge: an occluder. The same
    band short of the edge by a tenth of the photo (a product's own stripe) stays a difference."""
    catalogue = Image.new("RGB", (SIDE, SIDE), "white")
    draw = ImageDraw.Draw(catalogue)
    draw.ellipse((70, 20, 186, 136), fill=(250, 204, 60), outline="black", width=4)
    draw.rectangle((20, 130, 236, SIDE), fill=(120, 70, 170), outline="black", width=4)
    band = (0, SIDE - 40, SIDE, SIDE)  # across the bottom, 16% of the height
    short = (0, SIDE - 66, SIDE, SIDE - 26)
    if side == "left":
        catalogue = catalogue.rotate(-90)
        band, short = (0, 0, 40, SIDE), (26, 0, 66, SIDE)
    for box, occluder in ((band, True), (short, False)):
        query = catalogue.copy()
        ImageDraw.Draw(query).rectangle(box, fill=(210, 30, 20))
        ImageDraw.Draw(query).text((box[0] + 12, box[1] + 14), "HOT SALE -50%", fill="white")
        result = compared(query, catalogue)
        if occluder:
            assert result.occluded > 0.1 and result.largest <= MAX_REGION and result.visible >= MIN_VISIBLE, result
        else:
            assert result.occluded < 0.01 and result.largest > MAX_REGION, result


def test_what_hangs_off_a_band_and_a_band_too_deep_for_a_banner_stay_differences():
    """A part of the product in another colour touching the banner is not hidden with it; nor is a band covering
    more than a quarter of the photo (a product's own lower part in another colour)."""
    catalogue = Image.new("RGB", (SIDE, SIDE), "white")
    draw = ImageDraw.Draw(catalogue)
    draw.ellipse((70, 20, 186, 136), fill=(250, 204, 60), outline="black", width=4)
    draw.rectangle((20, 130, 236, SIDE), fill=(120, 70, 170), outline="black", width=4)
    hanging = catalogue.copy()
    ImageDraw.Draw(hanging).rectangle((0, SIDE - 40, SIDE, SIDE), fill=(210, 30, 20))
    ImageDraw.Draw(hanging).rectangle((100, 150, 160, SIDE - 40), fill=(40, 160, 60))  # touches the band
    result = compared(hanging, catalogue)
    assert result.occluded > 0.1 and result.largest > MAX_REGION, result
    deep = catalogue.copy()
    ImageDraw.Draw(deep).rectangle((0, SIDE - 80, SIDE, SIDE), fill=(210, 30, 20))  # 31% of the height
    result = compared(deep, catalogue)
    assert result.occluded < 0.01 and result.largest > MAX_REGION, result


def test_strokes_that_differ_inside_the_frame_count_but_not_near_its_edge():
    """A thin stroke (a pixel wide: no region to weigh, the tolerance of a pixel hides it) is an edge the other
    image lacks; within the frame's margin (4% of the side) it is taken for a pasted photo's edge."""
    catalogue = Image.new("RGB", (128, 128), "white")
    ImageDraw.Draw(catalogue).rectangle((30, 30, 97, 97), outline="black", width=3)
    inside, near_the_edge = catalogue.copy(), catalogue.copy()
    ImageDraw.Draw(inside).line((40, 60, 88, 60), fill="black", width=1)
    ImageDraw.Draw(near_the_edge).line((20, 3, 108, 3), fill="black", width=1)  # the margin: 5 pixels
    assert compared(catalogue, catalogue).strokes == 0.0
    result = compared(inside, catalogue)
    assert result.strokes > 0.1 and result.largest == 0.0, result
    result = compared(near_the_edge, catalogue)
    assert result.strokes == 0.0 and result.largest == 0.0, result


def test_a_query_smaller_than_the_small_copy_is_compared_at_its_resolution():
    """A quarter-size query: the catalogue image is brought down to the query's resolution, not the query up."""
    product = drawing()
    quarter = product.resize((64, 64), Image.LANCZOS)
    result = compared(quarter, product, IDENTITY * 4)
    assert result.colour_ok and result.largest <= MAX_REGION and result.visible > 0.95, result


@pytest.mark.parametrize(("step", "is_compared"), [(0.05, True), (0.049, False), (19.9, True), (20.5, False)])
def test_an_alignment_too_squeezed_or_stretched_is_not_compared(step, is_compared):
    """Query pixels worth between 1/20 and 20 catalogue pixels are compared; beyond, the fit is degenerate."""
    catalogue = drawing().resize((160, 160), Image.LANCZOS)
    query = catalogue.resize((round(160 / step),) * 2, Image.LANCZOS)
    result = compared(query, catalogue, IDENTITY * step)
    if is_compared:
        assert result.colour_ok and result.visible > 0.9, result
    else:
        assert result == NOT_COMPARED


def test_small_copy_keeps_the_aspect_ratio_within_the_side():
    wide = np.zeros((256, 512, 3), np.uint8)
    assert small_copy(wide).shape == (64, 128, 3)
    tall = np.zeros((600, 150, 3), np.uint8)
    assert small_copy(tall).shape == (128, 32, 3)
    assert small_copy(np.zeros((2000, 40, 3), np.uint8)).shape == (128, 8, 3)  # never under 8 pixels
    small = np.zeros((100, 60, 3), np.uint8)
    assert small_copy(small) is small


def test_a_fine_print_is_averaged_when_the_catalogue_image_is_brought_down_to_the_query():
    """A product printed in 1-pixel stripes and an exact third-size copy of it (area-averaged, the way a
    camera or a thumbnailer averages): at the query's resolution the two are the same."""
    catalogue = Image.new("RGB", (120, 120), "white")
    draw = ImageDraw.Draw(catalogue)
    draw.rectangle((12, 12, 107, 107), fill=(90, 140, 220), outline="black", width=3)
    for y in range(24, 96, 2):
        draw.line((24, y, 95, y), fill=(250, 204, 60), width=1)
    third = catalogue.resize((40, 40), Image.BOX)
    result = compared(third, catalogue, IDENTITY * 3)
    assert result.colour_ok and result.largest <= MAX_REGION and result.strokes < 0.1, result


def striped_jar(stripe=(90, 240, 210)) -> Image.Image:
    """Flat art with sharp colour edges (magenta and turquoise stripes, on odd rows) and faint ones (a checker
    of green and violet, two colours of about the same lightness: 113 and 129 grey levels)."""
    image = Image.new("RGB", (320, 320), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((21, 67, 139, 261), radius=16, fill=(195, 75, 200))
    for top in (85, 159, 233):
        draw.rectangle((21, top, 139, top + 25), fill=stripe)
    for row in range(8):
        for col in range(8):
            fill = (40, 150, 110) if (row + col) % 2 else (205, 70, 250)
            draw.rectangle((180 + 14 * col, 100 + 14 * row, 193 + 14 * col, 113 + 14 * row), fill=fill)
    return image


def jpeg(image: Image.Image, quality: int = 90) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)  # Pillow's default: colour at half resolution (4:2:0)
    return Image.open(buffer).convert("RGB")


def test_a_jpeg_copy_of_flat_art_is_the_same_along_its_colour_edges_and_faint_edges():
    """The stored copy is a JPEG: its colour, kept at half resolution, fringes every sharp colour edge with a
    pixel of mixed colour, and its noise moves edges between colours of about the same lightness in and out
    of the edge detector's reach. Neither is a difference; a stripe in another colour still is."""
    product = striped_jar()
    result = compared(product, jpeg(product))
    assert result.colour_ok and result.largest <= MAX_REGION / 3 and result.strokes <= 0.05, result
    result = compared(striped_jar(stripe=(250, 200, 60)), jpeg(product))
    assert result.largest > MAX_REGION, result


@pytest.mark.parametrize(("dark", "colour_ok"), [(40, True), (41, False)])
def test_only_pixels_lit_above_40_set_the_brightness_gain(dark, colour_ok):
    """A grey panel on a dark background; the catalogue's background is 1.5 times as light. Pixels of value
    40 or less are too dark to say how much a photo was brightened and are left out of the value gain (the
    panel alone sets it: 1.0); at 41 they count, and the background's 1.5 is beyond a brightening's bounds."""
    query = np.full((64, 64, 3), dark, np.uint8)
    query[24:40, 24:40] = 200  # the panel: a sixteenth of the picture
    catalogue = query.copy()
    catalogue[query[..., 0] == dark] = round(dark * 1.5)
    assert flat_compared(query, catalogue).colour_ok is colour_ok


@pytest.mark.parametrize(
    ("query_rgb", "catalogue_rgb"),
    [
        ((255, 195, 195), (204, 255, 204)),  # the catalogue's panel at saturation 51: coloured, just
        ((51, 40, 40), (40, 51, 40)),  # the query's panel at value 51: coloured, just
    ],
)
def test_pixels_saturated_and_lit_above_50_in_both_set_the_hue_turn(query_rgb, catalogue_rgb):
    """A panel turned from red to green (120 degrees, past the 60 a colour filter may turn) at the edge of what
    counts as coloured: saturation and value above 50 in both pictures. Counted, the turn is out of bounds."""
    query = np.full((64, 64, 3), 255, np.uint8)
    query[8:56, 8:56] = query_rgb
    catalogue = query.copy()
    catalogue[8:56, 8:56] = catalogue_rgb
    assert flat_compared(query, catalogue).colour_ok is False


def test_a_small_copy_averages_a_fine_pattern_rather_than_sampling_it():
    """The catalogue image is kept small by averaging: sampled, a fine print would alias into stripes that the
    query, averaged down the same way, does not show."""
    checks = (np.indices((300, 300)).sum(axis=0) % 2 * 255).astype(np.uint8)
    small = small_copy(np.dstack([checks] * 3))
    assert max(small.shape[:2]) == 128 and small.std() < 10 and abs(float(small.mean()) - 127.5) < 5


def test_a_product_without_inner_edges_has_no_strokes_that_differ():
    """Too few edges inside the frame to weigh (a plain panel filling the picture): nothing differs in strokes."""
    plain = np.full((64, 64, 3), 255, np.uint8)
    plain[1:63, 1:63] = (200, 60, 60)
    result = flat_compared(plain, plain)
    assert result.colour_ok and result.strokes == 0.0 and result.largest == 0.0


def _reference_hue_turn(turns: np.ndarray) -> float:
    """The hue turn as first written, each pixel's angle computed: what the look-up tables must reproduce."""
    angles = turns * (np.pi / 90)
    counts, edges = np.histogram(np.mod(angles, 2 * np.pi), bins=compare_module.HUE_BINS, range=(0, 2 * np.pi))
    peak = (edges[np.argmax(counts)] + np.pi / compare_module.HUE_BINS + np.pi) % (2 * np.pi) - np.pi
    near = np.abs(np.angle(np.exp(1j * (angles - peak)))) <= compare_module.HUE_NEAR * np.pi / 180
    return float(np.angle(np.mean(np.exp(1j * angles[near]))) * 90 / np.pi)


@pytest.mark.parametrize("seed", range(40))
def test_the_hue_turn_from_tables_is_the_pixel_by_pixel_one_to_the_last_bit(seed):
    rng = np.random.default_rng(seed)
    centre, spread = rng.integers(-179, 180), rng.integers(0, 60)
    turns = np.clip(centre + rng.integers(-spread, spread + 1, rng.integers(21, 5000)), -179, 179)
    turns[: rng.integers(0, 10)] = rng.integers(-179, 180)  # a few pixels of a part that differs
    cat, query = np.where(turns >= 0, turns, 0), np.where(turns >= 0, 0, -turns)  # 8-bit hues, as compare.py has them
    observed = cat.astype(np.uint8) - query.astype(np.uint8).astype(np.float64)
    assert compare_module._hue_turn(observed) == _reference_hue_turn(observed)


def test_each_possible_hue_turn_falls_in_the_bin_numpys_histogram_puts_it_in():
    tables = compare_module._TURNS
    for turn in range(-179, 180):
        wrapped = np.mod(np.array([turn * (np.pi / 90)]), 2 * np.pi)
        counts, _ = np.histogram(wrapped, bins=compare_module.HUE_BINS, range=(0, 2 * np.pi))
        assert tables.bins[turn + tables.offset] == int(np.argmax(counts))
