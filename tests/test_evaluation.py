"""The evaluation harness on a small catalogue: its transforms, its split, and the script's table."""

import random
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from app.evaluation import TRANSFORMS, catalogue_queries, competitor_photo, split_manifest
from embeddings.loader import load_image

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transforms_are_deterministic_and_change_the_photo(catalogue, name):
    path = catalogue.parent / "images" / "F001-P001-1.jpg"
    first, again = competitor_photo(path, name, seed=3), competitor_photo(path, name, seed=3)
    assert first == again
    decoded = load_image(first, max_bytes=10**7, max_pixels=10**8, max_side=None).image
    original = Image.open(path).convert("RGB")
    assert decoded.size != original.size or decoded.tobytes() != original.tobytes()
    assert TRANSFORMS[name](original, random.Random(1)).mode == "RGB"


def test_split_holds_products_out_of_the_index(catalogue, tmp_path):
    indexed, held = split_manifest(catalogue, tmp_path / "indexed.csv", holdout=5, seed=0)
    held_products = {q.product_id for q in held}
    assert len(held_products) == 1  # at most a tenth of the 16 products
    kept = catalogue_queries(indexed, count=100, seed=0)
    assert len(kept) == 15 and not held_products & {q.product_id for q in kept}
    assert all(q.image.is_absolute() and q.image.exists() for q in kept)


def test_the_script_prints_a_row_per_transform(catalogue, tmp_path):
    command = [sys.executable, "scripts/evaluate.py", str(catalogue), "--queries", "6", "--holdout", "2"]
    command += ["--transforms", "crop", "banner", "--data-dir", str(tmp_path / "eval")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.split()}
    assert {"crop", "banner", "overall"} <= set(rows)
    assert rows["overall"][1] == "12" and float(rows["overall"][2]) >= 0.8  # factory top-1 on easy queries
    assert "held-out products" in done.stdout and "latency per search" in done.stdout
