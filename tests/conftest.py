"""Shared fixtures: small real models, catalogues drawn by the tests, isolated data directories, services that
are closed after each test, and a database session whose work is rolled back.

tests/unit: no HTTP, no subprocess. tests/api: the app through TestClient, lifespan included.
tests/process: subprocesses (CLI, kill -9, memory, scripts, linters), marked `process`.
"""

import functools
import http.server
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for a model hub

from helpers import TEST_SETTINGS, vector_store_for
from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from app.bootstrap import Services, build_services
from app.core.config import Settings
from app.core.db import make_engine
from app.database import upgrade
from app.demo.sample_catalogue import write_catalogue
from embeddings import Embedder, load_embedder

TINY_MODEL = "openclip:sourcelens-tiny:random"
BACKGROUND_THREADS = ("index-rebuild", "index-preload")
POSTGRES_URL = os.environ.get("SOURCELENS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


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
    more = {**TEST_SETTINGS, **vector_store_for(tmp_path)}
    return Settings(data_dir=tmp_path / "data", model=TINY_MODEL, precision="fp32", embed_batch_size=8, **more)


@pytest.fixture
def make_services(settings: Settings) -> Iterator[Callable[..., Services]]:
    """Builds services on the test's data directory (settings overridable); closes them afterwards, threads and
    connections included."""
    started: list[Services] = []

    def start(model: Embedder, **overrides: object) -> Services:
        services = build_services(settings.model_copy(update={"model": model.name, **overrides}), model)
        started.append(services)
        return services

    yield start
    for services in started:
        services.close()


@pytest.fixture(autouse=True)
def root_logging_restored() -> Iterator[None]:
    """A test that runs the CLI or the app factory configures logging for a process: a handler on that test's
    captured stderr, closed once it ends. Later tests' logging must not write into it."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.fixture(autouse=True, scope="module")
def no_leaked_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test module, its module-wide services included, leaves no thread running, but for the index's
    background rebuild and preload, which a process may abandon at exit, and what the module declares in
    LINGERING_THREADS (name prefixes) with its reason."""
    before = set(threading.enumerate())
    yield
    allowed = BACKGROUND_THREADS + tuple(getattr(request.module, "LINGERING_THREADS", ()))
    if vector_store_for(Path()):  # Milvus Lite's gRPC server: see tests/unit/test_vector_store_contract.py
        allowed += ("ThreadPoolExecutor-",)
    leaked = [t for t in threading.enumerate() if t not in before and not t.name.startswith(allowed)]
    deadline = time.monotonic() + 5
    for thread in leaked:
        thread.join(max(0.0, deadline - time.monotonic()))
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads left running: {still}"


def new_postgres_database() -> Iterator[str]:
    """A new database on the real PostgreSQL server, dropped afterwards. CI must have the server."""
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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database on the real PostgreSQL server for the whole session (tests roll back or tolerate others)."""
    yield from new_postgres_database()


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A database of this test's own on the real PostgreSQL server."""
    yield from new_postgres_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings for a test that runs once on SQLite (the default) and once on its own PostgreSQL database."""
    if request.param == "sqlite":
        return {}
    return {"database_url": str(request.getfixturevalue("empty_postgres_url"))}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalogue.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def db_connection(database_url: str) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back after the test (app.bootstrap, imported above,
    has imported every table)."""
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()
    engine.dispose()


@pytest.fixture
def rolled_back_sessions(db_connection: Connection) -> sessionmaker[Session]:
    """Sessions for services under test: each commit is a savepoint of the test's transaction, so services
    commit freely and the test leaves nothing behind (Netflix Dispatch's pattern)."""
    return sessionmaker(bind=db_connection, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture(scope="module")
def images_site(catalogue) -> Iterator[str]:
    """http://127.0.0.1:PORT/ serving the catalogue's images/ folder."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(catalogue.parent / "images"))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{site.server_address[1]}"
    site.shutdown()
    site.server_close()
    thread.join(5)
