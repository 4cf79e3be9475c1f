"""Query-side crops: parsing a caller's box, trimming a frame off the subject, turning a tilted photo straight."""

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from app.core.errors import InvalidInputError
from app.demo.sample_catalogue import Design, factory_palette, render_product
from app.search.crops import deskewed, parse_bbox, query_crops, scale_box, subject_box, subject_boxes, zoomed_out

PRODUCTS = [render_product(Design(seed=s, palette=factory_palette(s % 5)), size=320) for s in range(1, 4)]


def test_bbox_parsing():
    assert parse_bbox("10,20,110,220", (400, 300)) == (10, 20, 110, 220)
    assert parse_bbox("0.25,0,0.75,0.5", (400, 300)) == (100, 0, 300, 150)
    for bad in ["1,2,3", "a,b,c,d", "50,50,10,10", "0,0,401,10", "0,0,8,8"]:
        with pytest.raises(InvalidInputError):
            parse_bbox(bad, (400, 300))


def test_subject_crop_trims_pads_and_keeps_full_frames():
    padded = ImageOps.expand(PRODUCTS[0].resize((100, 100)), border=(150, 30, 20, 90), fill=(0, 90, 0))
    x0, y0, x1, y1 = subject_box(padded)
    assert abs(x0 - 150) <= 4 and abs(y0 - 30) <= 4 and abs(x1 - 250) <= 4 and abs(y1 - 130) <= 4
    photo, subject = query_crops(padded, auto_crop=True)
    assert photo is padded and subject.size == (x1 - x0, y1 - y0)
    assert query_crops(padded, auto_crop=False) == [padded]
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 120, 3), dtype=np.uint8))
    assert subject_box(noise) is None
    assert query_crops(noise, auto_crop=True) == [noise]  # nothing to trim, nor tilted: the photo alone


@pytest.mark.parametrize("side", ["left", "top", "right", "bottom"])
def test_a_wide_margin_on_one_side_alone_is_trimmed(side):
    """The product nearly touches three edges of its white photo and leaves a third of it empty on one: that
    side is worth trimming though the others are not."""
    texture = Image.fromarray(np.random.default_rng(1).integers(0, 120, (116, 116, 3), dtype=np.uint8))
    margin = {"left": (60, 2, 2, 2), "top": (2, 60, 2, 2), "right": (2, 2, 60, 2), "bottom": (2, 2, 2, 60)}[side]
    photo = ImageOps.expand(texture, border=margin, fill="white")
    x0, y0, x1, y1 = subject_box(photo)
    assert abs(x0 - margin[0]) <= 2 and abs(y0 - margin[1]) <= 2
    assert abs(photo.width - x1 - margin[2]) <= 2 and abs(photo.height - y1 - margin[3]) <= 2


def tilted(image: Image.Image, angle: float, fill=(255, 255, 255)) -> Image.Image:
    return image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)


@pytest.mark.parametrize("angle", [-20, -8, 6, 15, 30])
def test_a_photo_pasted_at_a_tilt_is_turned_straight(angle):
    photo = PRODUCTS[2].resize((240, 200))
    straight = deskewed(tilted(photo, angle))
    assert straight is not None
    assert abs(straight.width - photo.width) <= 6 and abs(straight.height - photo.height) <= 6
    a = np.asarray(straight.resize(photo.size).convert("L"), np.float32)
    b = np.asarray(photo.convert("L"), np.float32)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9  # upright again, not turned further


def test_only_tilted_rectangles_on_a_plain_fill_are_deskewed():
    photo = PRODUCTS[2].resize((240, 200))
    assert deskewed(photo) is None  # upright already
    assert deskewed(tilted(photo, 2)) is None  # below the smallest tilt worth a crop
    noisy = tilted(photo, 15)
    noisy.putpixel((0, 0), (0, 0, 0))  # corners of different colours: not a pasted photo
    assert deskewed(noisy) is None
    turned = tilted(photo, 15)
    crops = query_crops(turned, auto_crop=True)  # the photo, straightened, and the product trimmed of its backdrop
    assert crops[0] is turned and len(crops) == 3 and crops[2].size == (116, 120)
    upright = PRODUCTS[2].resize((240, 200)).crop((65, 31, 181, 151))  # the product alone: nothing to trim
    photo, straight = query_crops(tilted(upright, 15), auto_crop=True)  # straightened, then nothing to trim
    assert subject_box(upright) is None and abs(straight.width - 116) <= 3 and abs(straight.height - 120) <= 3


def test_a_photo_zoomed_out_keeps_its_size_with_itself_shrunk_in_the_middle_on_its_border_colour():
    photo = Image.new("RGB", (200, 100), (10, 200, 30))
    photo.paste((250, 0, 0), (20, 10, 180, 90))  # a red product filling most of a green photo
    zoomed = np.asarray(zoomed_out(photo, 0.5))
    assert zoomed.shape == (100, 200, 3)
    assert zoomed[2, 2].tolist() == [10, 200, 30] and zoomed[50, 20].tolist() == [10, 200, 30]  # the room around
    assert zoomed[50, 100].tolist() == [250, 0, 0] and zoomed[33, 63].tolist() == [250, 0, 0]  # the product, half
    assert zoomed[26, 100].tolist() == [10, 200, 30]  # its top edge moved from row 10 to row 30


def test_a_box_on_the_upload_is_moved_onto_the_reduced_copy():
    assert scale_box((100, 50, 300, 250), (1000, 500), (320, 160)) == (32, 16, 96, 80)
    assert scale_box((0, 0, 2, 2), (1000, 1000), (100, 100)) == (0, 0, 1, 1)  # never empty


def test_a_frame_of_any_uniform_colour_and_width_is_trimmed():
    noise = np.random.default_rng(1).integers(0, 255, (30, 30, 3), dtype=np.uint8)
    product = Image.fromarray(noise).resize((120, 120))  # a busy photo, with no background of its own
    for border, fill in [((40, 8, 8, 8), "white"), ((6, 6, 6, 50), (20, 20, 20)), ((10, 30, 60, 6), (0, 0, 200))]:
        framed = ImageOps.expand(product, border=border, fill=fill)
        box = subject_box(framed)
        left, top, right, bottom = border
        expected = (left, top, framed.width - right, framed.height - bottom)
        assert box is not None and all(abs(a - b) <= 4 for a, b in zip(box, expected, strict=True)), (box, expected)
    assert subject_box(ImageOps.expand(product, border=2, fill="white")) is None  # too thin to be worth a crop
    assert subject_box(Image.new("RGB", (200, 200), "white")) is None  # nothing but background


def test_several_products_on_one_photo_are_found_largest_first():
    big = render_product(Design(seed=3, palette=factory_palette(3)), size=260)
    small = render_product(Design(seed=8, palette=factory_palette(1)), size=180)
    photo = Image.new("RGB", (640, 360), (250, 250, 250))
    photo.paste(ImageOps.crop(small, 20), (420, 90))
    photo.paste(ImageOps.crop(big, 20), (30, 60))
    boxes = subject_boxes(photo)
    assert len(boxes) == 2
    (x0, y0, x1, y1), (u0, v0, u1, v1) = boxes
    assert x1 <= 320 and u0 >= 400  # the big one on the left first, then the small one on the right
    assert (x1 - x0) * (y1 - y0) > (u1 - u0) * (v1 - v0)


def test_one_product_gives_one_box_and_a_busy_photo_the_whole_frame():
    product = render_product(Design(seed=5, palette=factory_palette(2)), size=300)
    padded = ImageOps.expand(product, 60, (250, 250, 250))
    (box,) = subject_boxes(padded)
    x0, y0, x1, y1 = subject_box(padded)
    assert box[0] < x0 and box[1] < y0 and box[2] > x1 and box[3] > y1  # the subject, with room around it
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8))
    assert subject_boxes(noise) == [(0, 0, 300, 200)]


def test_bbox_boundaries():
    size = (400, 300)
    assert parse_bbox("0,0,1,1", size) == (0, 0, 400, 300)  # 0 and 1 are fractions: the whole photo
    assert parse_bbox("0, 0, 0.5, 1", size) == (0, 0, 200, 300)
    assert parse_bbox("0,0,16,16", size) == (0, 0, 16, 16)  # 16 pixels a side is just enough
    assert parse_bbox("384,284,400,300", size) == (384, 284, 400, 300)  # up to the far edges
    for text, message in [
        ("0,0,15,16", "smaller than 16 pixels"),
        ("0,0,16,15", "smaller than 16 pixels"),
        ("0,0,0.03,0.5", "smaller than 16 pixels"),  # 12 pixels wide once scaled
        ("0,0,1,2", "smaller than 16 pixels"),  # a 2 makes them pixels, not fractions
        ("0,0,400,301", "not a box inside the 400x300 photo"),
        ("-1,0,20,20", "not a box inside the 400x300 photo"),
        ("20,0,20,20", "not a box inside the 400x300 photo"),
        ("0,0,nan,20", "must be four numbers"),
        ("0,0,inf,20", "must be four numbers"),
        ("0,0,20,20,20", "must be four numbers"),
    ]:
        with pytest.raises(InvalidInputError, match=message):
            parse_bbox(text, size)


def bar(height: int) -> Image.Image:
    """A 60 pixels wide black bar of the given height at (20, 40) on a white 100x100 photo."""
    photo = Image.new("RGB", (100, 100), "white")
    ImageDraw.Draw(photo).rectangle((20, 40, 79, 40 + height - 1), fill="black")
    return photo


def test_a_subject_needs_16_pixels_on_each_side():
    assert subject_box(bar(16)) == (20, 40, 80, 56)
    assert subject_box(bar(16).transpose(Image.Transpose.TRANSPOSE)) == (40, 20, 56, 80)
    assert subject_box(bar(15)) is None
    assert subject_box(bar(15).transpose(Image.Transpose.TRANSPOSE)) is None


def test_one_subject_keeps_a_margin_of_15_percent_of_each_side_inside_the_photo():
    assert subject_boxes(bar(16)) == [(11, 38, 89, 58)]  # 60x16: 9 and 2 pixels more on each side
    assert subject_boxes(bar(15)) == [(0, 0, 100, 100)]  # too thin to be a subject: the whole photo
    photo = Image.new("RGB", (200, 100), "white")
    ImageDraw.Draw(photo).rectangle((40, 30, 139, 69), fill=(200, 30, 30))
    assert subject_boxes(photo) == [(25, 24, 155, 76)]
    near_the_edge = Image.new("RGB", (200, 100), "white")
    ImageDraw.Draw(near_the_edge).rectangle((5, 10, 104, 89), fill=(30, 120, 30))
    assert subject_box(near_the_edge) == (5, 10, 105, 90)
    assert subject_boxes(near_the_edge) == [(0, 0, 120, 100)]  # the margin is clipped at the photo's edges


def test_several_subjects_get_their_exact_boxes_and_a_small_tag_is_left_out():
    photo = Image.new("RGB", (300, 200), (245, 245, 245))
    draw = ImageDraw.Draw(photo)
    draw.rectangle((20, 30, 119, 129), fill=(200, 40, 40))  # 100x100
    draw.rectangle((180, 50, 259, 109), fill=(40, 40, 200))  # 80x60
    expected = [(5, 15, 135, 145), (168, 41, 272, 119)]  # the dilation undone, then 15% of each side added
    assert subject_boxes(photo) == expected
    draw.rectangle((270, 170, 279, 179), fill="black")  # a 10x10 tag: 100 pixels, under 2% of the photo
    assert subject_boxes(photo) == expected
    assert subject_boxes(photo, limit=1) == expected[:1]


@pytest.mark.parametrize("angle", [-2.5, -2, 2, 2.5])
def test_a_tilt_under_3_degrees_either_way_is_left_alone(angle):
    assert deskewed(tilted(PRODUCTS[2].resize((240, 200)), angle)) is None


def assert_cropped_to_itself(image: Image.Image, size: tuple[int, int], fill=(255, 255, 255)) -> None:
    """Within 2 pixels of the photo's size, and every edge row and column holds some of the photo."""
    assert abs(image.width - size[0]) <= 2 and abs(image.height - size[1]) <= 2, image.size
    photo = np.abs(np.asarray(image, np.int16) - fill).max(axis=2) > 6
    assert photo[0].any() and photo[-1].any() and photo[:, 0].any() and photo[:, -1].any()


@pytest.mark.parametrize("angle", [-44, -20, -8, -3.5, 3.5, 6, 15, 45])
def test_a_straightened_photo_is_cropped_to_itself(angle):
    assert_cropped_to_itself(deskewed(tilted(PRODUCTS[2].resize((240, 200)), angle)), (240, 200))


@pytest.mark.parametrize("angle", [-30, 30])
def test_a_long_strip_is_turned_straight_whole(angle):
    strip = PRODUCTS[2].resize((300, 60))
    slanted = tilted(strip, angle)
    assert slanted.width < strip.width  # turned straight within this frame, its ends would be cut off
    straight = deskewed(slanted)
    assert_cropped_to_itself(straight, strip.size)
    a, b = (np.asarray(im.resize(strip.size).convert("L"), np.float32).ravel() for im in (straight, strip))
    assert np.corrcoef(a, b)[0, 1] > 0.9


def test_the_corners_must_all_be_within_the_fill_tolerance_of_the_top_left_one():
    photo = tilted(PRODUCTS[2].resize((240, 200)), 4)  # on white
    bottom_left = (0, photo.height - 1)
    photo.putpixel((photo.width - 1, 0), (249, 249, 249))  # 6 grey levels off: JPEG noise in the same fill
    photo.putpixel(bottom_left, (249, 249, 249))
    assert_cropped_to_itself(deskewed(photo), (240, 200))
    photo.putpixel(bottom_left, (248, 248, 248))  # 7 off the top left, though only 1 off the top right
    assert deskewed(photo) is None
