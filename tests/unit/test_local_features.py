"""Catalogue images' local features are extracted at ingest and stored (app/catalog/local_features.py), so a
search verifies its candidates without decoding or re-extracting a single catalogue image; what is stored gives
exactly the verification a fresh extraction gives; a damaged or missing file is made again."""

from pathlib import Path

import numpy as np
import pytest
from helpers import jpeg_bytes

from app.catalog.local_features import LocalFeatureStore
from app.demo.sample_catalogue import Design, factory_palette, render_product
from app.search.options import SearchOptions
from app.search.pipeline import QueryPhoto
from app.search.verify import (
    FEATURES_VERSION,
    FeatureCache,
    extract,
    features_from_arrays,
    features_to_arrays,
    verify,
)


def photo(seed: int):
    return render_product(Design(seed=seed, palette=factory_palette(seed)), size=320)


def test_stored_features_verify_exactly_as_freshly_extracted_ones(tmp_path: Path):
    store = LocalFeatureStore(tmp_path / "features")
    catalogue_image, query_image = photo(3), photo(3).rotate(8, expand=True, fillcolor="white")
    fresh = extract(catalogue_image)
    store.save("ab" * 32, features_to_arrays(fresh))
    loaded = features_from_arrays(store.load("ab" * 32))
    for name in ("points", "descriptors", "thumb", "small"):
        assert np.array_equal(getattr(loaded, name), getattr(fresh, name)), name
    assert loaded.size == fresh.size
    query = extract(query_image)
    assert verify(query, loaded) == verify(query, fresh) and verify(query, fresh).inliers > 20


def test_a_missing_or_damaged_file_is_made_again_from_the_stored_copy(tmp_path: Path):
    store = LocalFeatureStore(tmp_path / "features")
    loads: list[str] = []

    def load(content_hash: str):
        loads.append(content_hash)
        return photo(5)

    cache = FeatureCache(load, store=store)
    key = "cd" * 32
    assert store.load(key) is None
    cache.precompute(key)
    assert loads == [key] and store.path(key).exists()
    cache.precompute(key)  # stored already: nothing decoded again
    assert loads == [key]
    store.path(key).write_bytes(b"PK\x03\x04 not a zip after all")
    assert store.load(key) is None
    assert FeatureCache(load, store=store).get(key) is not None and len(loads) == 2


def test_the_memory_cache_holds_its_capacity_and_evicts_the_least_recently_used():
    loads: list[str] = []

    def load(content_hash: str):
        loads.append(content_hash)
        return photo(int(content_hash))

    cache = FeatureCache(load, capacity=2)  # no store: every miss is an extraction from the stored copy
    cache.get("1"), cache.get("2"), cache.get("1")  # both held; "1" used last
    assert loads == ["1", "2"]
    cache.get("3")  # evicts "2", the least recently used
    cache.get("1")
    assert loads == ["1", "2", "3"]
    cache.get("2")
    assert loads == ["1", "2", "3", "2"]


@pytest.fixture
def ingested(make_services, tiny_embedder, catalogue):
    services = make_services(tiny_embedder)
    assert services.ingest.ingest_manifest(catalogue).added == 28
    return services


def test_ingest_stores_every_images_features_and_a_search_never_decodes_the_catalogue(ingested, catalogue):
    services = ingested
    # Under the extraction's version: features made another way are not read as if they were these.
    stored = sorted(p.stem for p in (services.settings.features_dir / FEATURES_VERSION).rglob("*.npz"))
    with services.sessions() as session:
        from sqlalchemy import text

        hashes = sorted(row[0] for row in session.execute(text("SELECT content_hash FROM images")))
    assert stored == hashes

    def no_catalogue_image(content_hash: str):
        raise AssertionError(f"the search decoded catalogue image {content_hash[:12]}")

    cache = services.search.evidence.features
    cache._load = no_catalogue_image  # what a search may not need any more
    cache._items.clear()
    query = jpeg_bytes(render_product(Design(seed=2, palette=factory_palette(1)), size=320))
    data = (catalogue.parent / "images" / "F002-P003-1.jpg").read_bytes()
    result = services.search.run([QueryPhoto(data)], None, SearchOptions(include_weak=True))
    best = result.factories[0].matches[0]
    assert result.factories[0].factory_id == "F002" and best.level == "identical"
    assert best.verification is not None and best.verification.inliers > 20
    services.search.run([QueryPhoto(query)], None, SearchOptions(include_weak=True))  # others: no decode either
