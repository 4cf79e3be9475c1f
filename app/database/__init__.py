"""The database with every table of the app, brought to the newest schema by Alembic migrations
(migrations/versions), and nothing heavier (no model), so that short commands such as `sourcelens keys` and
`sourcelens db upgrade` start fast.

A database made before migrations existed (its tables made by create_all) is recognised and stamped with the
first migration, whose schema it has, then upgraded. Several processes starting at once on PostgreSQL take
turns with an advisory lock.
"""

import logging
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.db import Base, make_engine, make_session_factory
from app.core.errors import ServiceError
from app.database.tables import TABLES

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"  # the schema of the releases before migrations
WITH_KEYS = "0002"  # the same with api_keys: the last schema create_all made before migrations
MIGRATION_LOCK = 7_512_094_101  # PostgreSQL advisory lock held while migrating
log = logging.getLogger(__name__)


class SchemaError(ServiceError):
    """The database's schema is not the one this code needs."""


def open_database(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    """The engine and sessions on the configured database, at the newest schema: migrated on the spot, or, with
    SOURCELENS_AUTO_MIGRATE=false, checked (SchemaError, naming the command to run)."""
    settings.ensure_dirs()
    engine = make_engine(settings.resolved_database_url, settings.lock_wait_s)
    if settings.auto_migrate:
        upgrade(engine)
    else:
        current, head = revisions(engine)
        if current != head:
            raise SchemaError(
                f"the database schema is at {current or 'none'}, this code needs {head}: run `sourcelens db upgrade`"
            )
    return engine, make_session_factory(engine)


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to the newest schema; (revision before, revision now)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config = _config(connection)
        before = MigrationContext.configure(connection).get_current_revision()
        tables = inspect(connection)
        if before is None and tables.has_table("factories"):  # made by create_all, before migrations existed
            before = WITH_KEYS if tables.has_table("api_keys") else BASELINE
            command.stamp(config, before)
        command.upgrade(config, "head")
    head = head_revision()
    if before != head:
        log.info("database migrated from %s to %s", before or "empty", head)
    return before, head


def revisions(engine: Engine) -> tuple[str | None, str]:
    """(the database's revision, the newest one the code has)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision(), head_revision()


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def schema_differences(engine: Engine) -> list[str]:
    """What the models declare that the migrated database lacks or has otherwise (empty when they agree)."""
    assert TABLES  # every table's module is imported
    with engine.connect() as connection:
        # Alembic compares column types by default since 1.12; said here so that an older one does too.
        context = MigrationContext.configure(connection, opts={"compare_type": True})  # pragma: no mutate
        return [repr(diff) for diff in compare_metadata(context, Base.metadata)]


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config
