"""The dense comparison of aligned pairs: copies pass however recoloured as a whole or partly covered; a part
in another colour, another glyph on the same frame, a part alone or a product in another colour do not."""

import colorsys

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from app.search.compare import compare, small_copy
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


@pytest.mark.parametrize(("hue", "saturation", "value"), [(30, 1.2, 0.9), (-45, 0.8, 0.95), (0, 1.0, 0.85)])
def test_a_photo_recoloured_as_a_whole_is_the_same(hue, saturation, value):
    product = drawing()
    result = compared(shifted_colours(product, hue, saturation, value), product)
    assert result.colour_ok and result.largest <= MAX_REGION


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
