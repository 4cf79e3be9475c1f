"""Products too plain for keypoints (a flag's stripes, a plain shape) aligned by their outlines: copies framed,
resized, mirrored or cropped become identical; a flag with the same stripes in another colour does not."""

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from app.search import shapes
from app.search import verify as verify_module
from app.search.verify import QueryFeatures, extract, verify

SIDE = 256


def flag(stripes=((20, 140, 60), (255, 255, 255), (20, 140, 60))) -> Image.Image:
    """Three vertical stripes in a rounded rectangle, drawn large and brought down: soft outlines, no corners."""
    big = Image.new("RGB", (SIDE * 4, SIDE * 4), "white")
    draw = ImageDraw.Draw(big)
    x0, y0, x1, y1 = 40, 220, SIDE * 4 - 40, SIDE * 4 - 220
    third = (x1 - x0) // 3
    for i, colour in enumerate(stripes):
        draw.rectangle((x0 + i * third, y0, x0 + (i + 1) * third, y1), fill=colour)
    mask = Image.new("L", big.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((x0, y0, x1, y1), radius=80, fill=255)
    drawn = Image.composite(big, Image.new("RGB", big.size, "white"), mask)
    ImageDraw.Draw(drawn).rounded_rectangle((x0, y0, x1, y1), radius=80, outline=(200, 200, 200), width=6)
    return drawn.resize((SIDE, SIDE), Image.Resampling.LANCZOS)


def padded(image: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", (400, 360), (40, 90, 200))
    canvas.paste(image, (100, 60))
    return canvas


COPIES = {
    "resized": lambda image: image.resize((150, 150), Image.Resampling.BICUBIC),
    "padded": padded,
    "mirrored": ImageOps.mirror,
    "cropped": lambda image: image.crop((30, 40, 230, 220)),
}


def check(query: Image.Image, catalogue: Image.Image, outline: bool = True):
    features = QueryFeatures(query)
    return verify(features.features, extract(catalogue), features.mirrored, outline)


def test_a_plain_flag_has_too_few_keypoints_to_verify():
    original = flag()
    assert len(extract(original).points) < verify_module.FEW_CORNERS
    assert not check(COPIES["resized"](original), original, outline=False).aligned


@pytest.mark.parametrize("name", list(COPIES))
def test_a_copy_of_a_plain_flag_is_identical_by_its_outline(name):
    original = flag()
    result = check(COPIES[name](original), original)
    assert result.identical, result
    if name != "mirrored":  # its handful of keypoints, mirrored, can line up an exact mirror image
        assert result.aligned_by == "outline" and not check(COPIES[name](original), original, outline=False).aligned


def test_a_flag_with_the_same_stripes_in_another_colour_is_not_identical():
    sibling = flag(((20, 140, 60), (255, 255, 255), (230, 120, 30)))  # green-white-orange, not green-white-green
    result = check(COPIES["resized"](flag()), sibling)
    assert not result.identical, result


def test_a_busy_catalogue_image_is_never_aligned_by_outline(monkeypatch):
    """Keypoints speak for an image with corners: a failed keypoint check of one is final."""
    calls = []
    monkeypatch.setattr(shapes, "align", lambda *args: calls.append(args))
    busy = Image.fromarray(np.random.default_rng(3).integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8))
    assert len(extract(busy).points) >= verify_module.FEW_CORNERS
    check(flag(), busy)
    assert calls == []
    check(COPIES["resized"](flag()), flag())  # a plain one is tried
    assert len(calls) == 1


def test_nothing_drawn_aligns_with_nothing():
    blank = np.full((SIDE, SIDE, 3), 255, np.uint8)
    assert shapes.align(blank, blank[:128, :128], (SIDE, SIDE)) is None
    assert shapes.align(np.asarray(flag()), blank[:128, :128], (SIDE, SIDE)) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_nearly_blank_stretch_of_the_picture_matches_no_template(seed):
    """Over a background whose edges are rounding noise, OpenCV's normalised correlation divides almost nothing by
    almost nothing and reports 1.0 there (or another value, as its threads split the work): the alignment
    then went to the blank, and a flag's cropped copy was identical in one run and not in the next."""
    rng = np.random.default_rng(seed)
    picture = (rng.random((64, 160)) * 1e-6).astype(np.float32)
    ring = np.zeros((40, 40), np.float32)
    cv2.circle(ring, (20, 20), 12, 200.0, 2)
    picture[10:50, 110:150] += cv2.GaussianBlur(ring, (3, 3), 0)
    template = cv2.GaussianBlur(ring, (3, 3), 0)[5:35, 5:35] + (rng.random((30, 30)) * 60).astype(np.float32)
    found = shapes._match(picture, template, 1.0)
    assert found is not None
    score, transform = found
    assert 0.9 < score < 0.99
    assert transform[:2, 2].tolist() == [-115.0, -15.0]  # where the ring is, not in the blank


def test_flat_places_are_those_whose_own_spread_is_below_the_floor():
    rng = np.random.default_rng(3)
    picture = rng.random((20, 30)).astype(np.float32) * np.linspace(0, 4, 30, dtype=np.float32)  # spread grows
    floor = 0.5
    flat = shapes._flat_windows(picture, (5, 7), floor)
    expected = np.array(
        [[picture[y : y + 5, x : x + 7].std() < floor for x in range(30 - 7 + 1)] for y in range(20 - 5 + 1)]
    )
    assert flat.shape == expected.shape and (flat == expected).all()
    assert flat.any() and not flat.all()


@pytest.mark.parametrize("shape", [(1, 300), (300, 1), (2, 2), (5, 400), (400, 5)])
def test_a_query_too_thin_to_hold_a_template_aligns_with_nothing_and_does_not_fail(shape):
    """A 1 x 300 photo once made OpenCV's resize raise (an empty size): the search failed instead of answering."""
    query = Image.fromarray(np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8))
    assert shapes.align(np.asarray(query), np.asarray(flag().resize((128, 128))), (SIDE, SIDE)) is None
    result = check(query, flag())
    assert not result.identical and result.aligned_by == "keypoints"


def test_the_alignment_maps_the_query_onto_the_catalogue_image():
    original = flag()
    query = padded(original)  # the flag at (100, 60) of the padded photo, same scale
    found = shapes.align(np.asarray(query), np.asarray(original.resize((128, 128))), (SIDE, SIDE))
    assert found is not None
    transform, score = found
    assert score >= shapes.MIN_SCORE
    corners = np.array([[100.0, 60.0, 1.0], [356.0, 316.0, 1.0]]) @ transform.T
    assert np.allclose(corners, [[0, 0], [SIDE, SIDE]], atol=3.0), corners  # 1% of the side


def test_outlines_that_do_not_line_the_pixels_up_leave_the_keypoints_evidence(monkeypatch):
    """An outline match whose aligned pixels disagree proves nothing: the pair keeps its keypoint check."""
    shifted = np.array([[1.0, 0, 90], [0, 1.0, 0]])  # a third of the image off
    monkeypatch.setattr(shapes, "align", lambda *args: (shifted, 0.9))
    original = flag()
    result = check(COPIES["resized"](original), original)
    assert result.aligned_by == "keypoints" and not result.aligned, result


def turned(image: Image.Image, angle: float) -> Image.Image:
    """Turned counter-clockwise as shown, on white, as evaluate.py's turned copies are."""
    return image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))


@pytest.mark.parametrize("angle", [-22.0, -9.0, 13.0, 25.0])
def test_the_turn_of_a_turned_copy_is_read_from_its_edges(angle):
    original = np.asarray(flag())
    query = shapes.edges(np.asarray(turned(flag(), angle)))
    assert shapes.turn(query, shapes.edges(original)) == pytest.approx(angle, abs=2.0)
    assert abs(shapes.turn(shapes.edges(original), shapes.edges(original))) < 1.0
    blank = shapes.edges(np.full((64, 64, 3), 255, np.uint8))
    assert shapes.turn(blank, shapes.edges(original)) == 0.0 == shapes.turn(query, blank)  # nothing to turn


@pytest.mark.parametrize("angle", [-18.0, 12.0])
def test_a_turned_copy_of_a_plain_flag_is_identical_by_its_outline(angle):
    original = flag()
    query = turned(original, angle)
    assert not check(query, original, outline=False).identical  # its keypoints cannot tell
    result = check(query, original)
    assert result.identical and result.aligned_by == "outline", result
    transform, _ = shapes.align(np.asarray(query), np.asarray(original.resize((128, 128))), (SIDE, SIDE))
    # The flag's corners, turned with the photo, land on the catalogue image's (in some order: the flag's outline
    # is its own mirror image, so the mirrored alignment is as right).
    corners = np.array([[10.0, 55.0], [246.0, 55.0], [10.0, 201.0], [246.0, 201.0]])
    turn = np.radians(angle)
    rotation = np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
    in_query = (corners - SIDE / 2) @ rotation.T + [query.width / 2, query.height / 2]
    mapped = in_query @ transform[:, :2].T + transform[:, 2]
    nearest = np.linalg.norm(mapped[:, None] - corners[None], axis=2).min(axis=1)
    assert nearest.max() < 4.0, mapped  # 1.5% of the side


def test_a_turned_flag_with_the_same_stripes_in_another_colour_is_not_identical():
    sibling = flag(((20, 140, 60), (255, 255, 255), (230, 120, 30)))
    assert not check(turned(flag(), 15.0), sibling).identical
