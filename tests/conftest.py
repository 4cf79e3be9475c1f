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


POSTGRES_URL = os.environ.get("SOURCELENS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the real PostgreSQL server, dropped afterwards. CI must have the server."""
    import uuid

    from sqlalchemy import create_engine, make_url, text

    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"sourcelens_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalogue.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def db_session(database_url: str) -> Iterator:
    """A session inside a transaction that is rolled back after the test: services may commit freely."""
    from sqlalchemy.orm import Session

    from app.db import create_tables, make_engine

    engine = make_engine(database_url)
    create_tables(engine)
    with engine.connect() as connection:
        transaction = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
        yield session
        session.close()
        transaction.rollback()
    engine.dispose()
