"""The emoji evaluation catalogues: real artwork rendered offline from packages, distinct images, factories
dealt with a fixed seed, unknown products kept out."""

import csv

import numpy as np
import pytest
from PIL import Image

from app.demo.emoji_catalogue import SETS, available, write_emoji_catalogue


@pytest.mark.parametrize("name", sorted(SETS))
def test_a_small_catalogue_renders_distinct_products_and_keeps_unknown_ones_out(tmp_path, name):
    if not available(name):
        pytest.skip(f"{name} is not installed: pip install -e '.[eval]'")
    built = write_emoji_catalogue(tmp_path / name, name, images=12, factories=3, unknown=4, seed=1)
    with built.manifest.open() as f:
        rows = list(csv.DictReader(f))
    with built.unknown.open() as f:
        unknown = list(csv.DictReader(f))
    assert len(rows) == 12 and len(unknown) == 4
    assert len({r["factory_id"] for r in rows}) <= 3
    assert not {r["product_id"] for r in rows} & {r["product_id"] for r in unknown}
    pixels = [np.asarray(Image.open(built.manifest.parent / r["image"])) for r in rows + unknown]
    assert all(p.shape == (256, 256, 3) and p.min() < 200 for p in pixels)  # drawn, on a 256 px canvas
    assert len({p.tobytes() for p in pixels}) == 16  # no two products drawn the same
    again = write_emoji_catalogue(tmp_path / "again", name, images=12, factories=3, unknown=4, seed=1)
    with again.manifest.open() as f:
        assert [(r["product_id"], r["factory_id"]) for r in csv.DictReader(f)] == [
            (r["product_id"], r["factory_id"]) for r in rows
        ]
