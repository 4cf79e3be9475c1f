"""Shared fixtures: small real models, catalogues drawn by the tests, isolated data directories."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for a model hub

from app.config import Settings
from app.runtime import Runtime
from app.sample_catalogue import write_catalogue
from embeddings import Embedder, load_embedder

TINY_MODEL = "openclip:sourcelens-tiny:random"


@pytest.fixture(scope="session")
def tiny_embedder() -> Embedder:
    """Real open_clip code with a 2-layer random-weight ViT: fast, deterministic, meaningless vectors."""
    return load_embedder(TINY_MODEL, precision="fp32")


@pytest.fixture(scope="session")
def effnet_embedder() -> Embedder:
    """The real pretrained model available offline; it makes retrieval results meaningful."""
    return load_embedder("effnet-lite0", precision="auto")


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-factory, 16-product, 28-image catalogue; returns its manifest."""
    return write_catalogue(tmp_path_factory.mktemp("catalogue"), factories=4, products_per_factory=4, size=320)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", model=TINY_MODEL, precision="fp32", embed_batch_size=8)


@pytest.fixture
def make_runtime(settings: Settings) -> Iterator[Callable[..., Runtime]]:
    started: list[Runtime] = []

    def start(embedder: Embedder, **overrides: object) -> Runtime:
        runtime_settings = settings.model_copy(update={"model": embedder.name, **overrides})
        runtime = Runtime.start(runtime_settings, embedder)
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.engine.dispose()
