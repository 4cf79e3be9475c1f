"""Fixtures of the process tests."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from app.core.db import make_engine
from app.database import upgrade


@pytest.fixture
def database(empty_postgres_url: str) -> Iterator[tuple[str, Engine]]:
    """A PostgreSQL database of this test's own at the newest schema (migrated once, before any process starts)."""
    engine = make_engine(empty_postgres_url)
    upgrade(engine)
    yield empty_postgres_url, engine
    engine.dispose()
