"""Ranking: known answers with the real offline model, and the scoring rule itself."""

import io
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from app.services.ingest import ingest_manifest
from app.services.scoring import (
    MAX_SUPPORT,
    SUPPORT_MARGIN,
    SUPPORT_WEIGHT,
    Hit,
    default_near_duplicate,
    rank_factories,
)
from app.services.search import search
from app.services.search_options import QueryPhoto, SearchOptions


def edited(path: Path, how: str) -> bytes:
    image = Image.open(path).convert("RGB")
    if how == "resized":
        image = image.resize((image.width // 2, image.height // 2))
    elif how == "stretched":
        image = image.resize((image.width // 2, image.height // 3 * 2))
    elif how == "cropped":
        w, h = image.size
        image = image.crop((int(w * 0.08), int(h * 0.08), int(w * 0.92), int(h * 0.92)))
    elif how == "brighter":
        image = ImageEnhance.Brightness(image).enhance(1.25)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=40 if how == "recompressed" else 80)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def effnet_runtime(tmp_path_factory, effnet_embedder, catalogue):
    from app.config import Settings
    from app.runtime import Runtime

    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), model="effnet-lite0", embed_batch_size=16)
    runtime = Runtime.start(settings, effnet_embedder)
    assert ingest_manifest(runtime, catalogue).added == 28
    yield runtime
    runtime.close()


@pytest.mark.parametrize("how", ["resized", "stretched", "recompressed", "cropped", "brighter"])
def test_edited_copy_of_a_catalogue_photo_finds_its_factory_first(effnet_runtime, catalogue, how):
    images = sorted((catalogue.parent / "images").glob("*-1.jpg"))
    for path in images:
        factory_id, product_id = path.name[:4], path.name.rsplit("-", 1)[0]
        with effnet_runtime.sessions() as session:
            options = SearchOptions(top_k=3, include_weak=True)  # ranking, whatever the evidence
            result = search(session, effnet_runtime, [QueryPhoto(edited(path, how))], None, options)
        top = result.factories[0]
        assert top.factory_id == factory_id, f"{path.name} ({how}) → {top.factory_id}"
        assert top.matches[0].product_id == product_id


def test_top_k_and_result_shape(effnet_runtime, catalogue):
    data = edited(catalogue.parent / "images" / "F002-P001-1.jpg", "resized")
    with effnet_runtime.sessions() as session:
        result = search(session, effnet_runtime, [QueryPhoto(data)], None, SearchOptions(top_k=2, include_weak=True))
    assert len(result.factories) == 2 and result.total == 4
    assert result.factories[0].score >= result.factories[1].score
    assert set(result.factory_rows) == {f.factory_id for f in result.factories}


def hit(factory: str, product: str, similarity: float, image: int = 0) -> Hit:
    return Hit(image, product, factory, similarity)


def test_factory_with_several_close_products_beats_single_equal_match():
    ranked = rank_factories(
        [hit("A", "a1", 0.80), hit("B", "b1", 0.80), hit("B", "b2", 0.78), hit("B", "b3", 0.77)], top_k=5
    )
    assert [f.factory_id for f in ranked] == ["B", "A"]
    assert ranked[0].score == pytest.approx(0.80 + SUPPORT_WEIGHT * ((0.78 - 0.72) + (0.77 - 0.72)))


def test_crowd_of_mediocre_matches_never_beats_a_clearly_better_one():
    crowd = [hit("B", f"b{i}", 0.85) for i in range(30)]
    ranked = rank_factories([hit("A", "a1", 0.85 + SUPPORT_WEIGHT * MAX_SUPPORT * SUPPORT_MARGIN + 0.001), *crowd], 5)
    assert ranked[0].factory_id == "A"


def test_each_product_counts_once_with_its_best_image():
    ranked = rank_factories([hit("A", "a1", 0.9, 1), hit("A", "a1", 0.88, 2), hit("A", "a1", 0.87, 3)], 5)
    assert ranked[0].score == pytest.approx(0.9)
    assert [m.image_id for m in ranked[0].matches] == [1]


def test_near_duplicate_thresholds_by_model():
    assert default_near_duplicate("effnet-lite0") == 0.95
    assert default_near_duplicate("openclip:ViT-B-32:laion2b_s34b_b79k") == 0.92
    # Untrained weights and uncalibrated models never call a hit a near-duplicate by similarity alone.
    assert default_near_duplicate("openclip:ViT-B-32:random") > 1
    assert default_near_duplicate("openclip:ViT-L-14:openai") > 1
