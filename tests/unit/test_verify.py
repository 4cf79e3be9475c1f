"""Local-feature verification on transformed and unrelated pairs, and what each match level requires."""

import random

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from app.calibration.transforms import TRANSFORMS
from app.demo.sample_catalogue import Design, factory_palette, render_product
from app.search import verify as verify_module
from app.search.compare import Comparison
from app.search.verify import RATIO, QueryFeatures, extract, verify

PRODUCTS = [render_product(Design(seed=s, palette=factory_palette(s % 5)), size=320) for s in range(1, 13)]


def check(query: Image.Image, candidate: Image.Image):
    features = QueryFeatures(query)
    return verify(features.features, extract(candidate), features.mirrored)


@pytest.mark.parametrize("transform", ["resize", "crop", "mirror", "rotate", "colour", "pad", "banner", "screenshot"])
def test_an_edited_copy_verifies_as_identical(transform):
    identical = mirrored = 0
    for i in range(len(PRODUCTS)):
        query = TRANSFORMS[transform](PRODUCTS[i], random.Random(i))
        scale = 320 / max(query.size)  # queries are decoded at about the size catalogue copies are kept
        query = query.resize((round(query.width * scale), round(query.height * scale)))
        result = check(query, PRODUCTS[i])
        identical += result.identical
        mirrored += result.identical and result.mirrored
    # A symmetric product may align unmirrored; most mirrored copies are found mirrored, nothing else is.
    assert mirrored >= len(PRODUCTS) // 2 if transform == "mirror" else mirrored == 0
    # A product drawn plain, or cropped to its flat part, may lack the corners local features need: the
    # embedding carries those. Every other edited copy is proven identical.
    assert identical >= len(PRODUCTS) - 3, f"{transform}: {identical}/{len(PRODUCTS)}"


def test_unrelated_products_never_verify_as_identical():
    for i, query in enumerate(PRODUCTS):
        for j, candidate in enumerate(PRODUCTS):
            if i != j:
                result = check(ImageOps.mirror(query) if (i + j) % 2 else query, candidate)
                assert not result.identical, (i, j, result)


def _texture(seed: int) -> Image.Image:
    """A busy photo: hundreds of corners, unlike any other seed's."""
    noise = np.random.default_rng(seed).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    return Image.fromarray(noise).resize((400, 400), Image.Resampling.BICUBIC)


def test_most_unrelated_pairs_are_ruled_out_by_the_quick_look(monkeypatch):
    calls: list[int] = []
    real = verify_module._good_matches
    monkeypatch.setattr(verify_module, "_good_matches", lambda q, c: calls.append(len(q)) or real(q, c))
    features = [extract(_texture(seed)) for seed in range(5)]
    assert all(len(f.descriptors) > 2 * verify_module.QUICK_POINTS for f in features)  # the quick look applies
    ruled_out = 0
    for i, query in enumerate(features):
        for j, candidate in enumerate(features):
            if i != j:
                calls.clear()
                result = verify(query, candidate)
                assert not result.verified
                ruled_out += calls == [verify_module.QUICK_POINTS]  # 150 keypoints matched, not 600
    assert ruled_out >= 15  # of 20 pairs
    calls.clear()
    copy = extract(_texture(0).resize((360, 360)))
    result = verify(QueryFeatures(_texture(0)).features, copy)  # a query keeps its photo, to compare it whole
    assert result.identical and calls == [verify_module.QUICK_POINTS, len(features[0].descriptors) - 150]


def test_hamming_matches_are_opencvs_brute_force_matches():
    """The FAISS Hamming search replaced OpenCV's BFMatcher: the same ratio-test matches, pair for pair."""
    query = extract(_texture(7).rotate(10).resize((320, 320))).descriptors
    for candidate in (extract(_texture(7)).descriptors, extract(_texture(8)).descriptors):
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query, candidate, k=2)
        expected = [(p[0].queryIdx, p[0].trainIdx) for p in pairs if p[0].distance < RATIO * p[1].distance]
        assert verify_module._good_matches(query, candidate) == expected
    assert len(expected) < 50 < len(verify_module._good_matches(query, extract(_texture(7)).descriptors))


def test_mirrored_features_are_those_of_the_mirrored_photo():
    """The mirror's keypoints are derived, not detected again: nearly all lie where detection finds them in
    the mirrored photo, with the same descriptors; its thumbs are the mirrored photo's."""
    image = _texture(3).resize((317, 300))
    derived, fresh = QueryFeatures(image).mirrored(), extract(ImageOps.mirror(image))
    distances = np.linalg.norm(derived.points[:, None] - fresh.points[None], axis=2)
    on_fresh = distances.min(axis=1) < 1.0
    assert on_fresh.mean() > 0.9
    nearest = fresh.descriptors[distances.argmin(axis=1)[on_fresh]]
    assert np.median(np.unpackbits(derived.descriptors[on_fresh] ^ nearest, axis=1).sum(axis=1)) == 0
    np.testing.assert_array_equal(derived.small, fresh.small)
    assert derived.size == fresh.size


def test_blank_images_have_no_evidence():
    blank = Image.new("RGB", (200, 200), "white")
    result = check(blank, PRODUCTS[0])
    assert result.inliers == 0 and not result.verified and result.region is None


def verification(
    inliers=40, agreement=0.95, largest=0.0, different=0.0, visible=1.0, occluded=0.0, colour_ok=True, strokes=0.0
):
    compared = Comparison(different, largest, visible, occluded, colour_ok, strokes)
    return verify_module.Verification(inliers, inliers + 10, (0.1, 0.1, 0.9, 0.9), False, agreement, compared)


@pytest.mark.parametrize(
    ("changes", "identical"),
    [
        ({}, True),
        ({"inliers": 12}, True),  # the least evidence that aligns the two
        ({"inliers": 11}, False),  # too few consistent matches to trust the alignment
        ({"agreement": 0.85}, True),
        ({"agreement": 0.849}, False),  # aligned pixels disagree: patterns that merely line up
        ({"largest": verify_module.MAX_REGION}, True),
        ({"largest": verify_module.MAX_REGION + 0.001}, False),  # a region of the product differs
        ({"different": verify_module.MAX_DIFFERENT}, True),
        ({"different": verify_module.MAX_DIFFERENT + 0.001}, False),  # differences all over: noise or a recolouring
        ({"visible": verify_module.MIN_VISIBLE}, True),
        ({"visible": verify_module.MIN_VISIBLE - 0.001}, False),  # a part of the product alone
        ({"occluded": verify_module.MAX_OCCLUDED}, True),
        ({"occluded": verify_module.MAX_OCCLUDED + 0.001}, False),  # mostly covered
        ({"strokes": verify_module.MAX_STROKES}, True),
        ({"strokes": verify_module.MAX_STROKES + 0.001}, False),  # another print in thin lines
    ],
)
def test_what_identical_requires(changes, identical):
    assert verification(**changes).identical is identical


def test_verified_means_enough_consistent_inliers():
    assert verification(inliers=12).verified and not verification(inliers=11).verified


def test_a_copy_is_compared_whole_and_a_recolouring_within_bounds_passes():
    product = PRODUCTS[0]
    same = check(product.resize((300, 300)), product)
    assert same.identical and same.comparison.largest < 0.005 and same.comparison.visible > 0.95
    recoloured = check(TRANSFORMS["colour"](product, random.Random(5)), product)
    assert recoloured.aligned and recoloured.comparison.colour_ok
