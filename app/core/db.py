"""The declarative base, engine and sessions. SQLite is the embedded default; PostgreSQL (psycopg) is the
production path. Tables are declared by the packages that own them (catalog/models.py, ingest/models.py)."""

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Engine, Integer, TypeDecorator, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import SQLAlchemyError as DatabaseError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

SQLITE_POOL_SIZE = 32  # connections kept open: requests run on a thread pool of up to 40
SQLITE_MMAP_BYTES = 1 << 30  # of the database file mapped (SQLite caps it at its build's maximum, 2 GB here)
# What a database says when it is busy for now rather than broken: retrying later will do.
TRANSIENT_MESSAGES = (
    "database is locked",
    "database table is locked",
    "could not obtain lock",
    "deadlock detected",
    "lock timeout",
)

# BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY auto-increments.
RowId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A moment in UTC, aware on the way in and out on every database (SQLite drops the zone on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware one (UTC)")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON}


def make_engine(url: str, lock_wait_s: float = 30.0) -> Engine:
    """`lock_wait_s`: how long a statement waits for another's lock (SQLite's writer lock, PostgreSQL's row and
    table locks) before the database says it is busy, which the API answers with 503 and Retry-After."""
    if url.startswith("sqlite"):
        # Requests run in a thread pool, hence check_same_thread=False; the busy timeout lets
        # a search read while an ingest batch commits.
        # The pool holds a connection for each concurrent request (16 clients: 16). SQLAlchemy's default of
        # 5 + 10 overflow closed and reopened connections (and re-ran the pragmas) under load.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": lock_wait_s},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_POOL_SIZE,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Without a lock timeout a PostgreSQL writer queued behind a long transaction waits for ever.
    lock_timeout = f"-c lock_timeout={max(1, int(lock_wait_s * 1000))}"
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, connect_args={"options": lock_timeout})


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Pages read through a memory map, not a read() call each: a search's lookup of 200 hits touches as many
    # scattered pages of the images table (20,000-image catalogue: 0.95 -> 0.43 ms). Address space only: the
    # pages are the OS's file cache, shared by every connection.
    cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def begin_write(session: Session) -> None:
    """Open the session's transaction now, for writing. On SQLite this matters twice over: pysqlite defers
    BEGIN to the first INSERT, so a SAVEPOINT issued before it starts a transaction of its own, which its
    RELEASE commits (a row was durable before its batch, seen after a kill -9); and BEGIN IMMEDIATE takes the
    writer lock up front, waiting up to the busy timeout, rather than failing at once on a stale snapshot."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.driver_connection
    if driver is not None and not driver.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def transient_retry_after(exc: BaseException) -> int | None:
    """Seconds after which to retry, when `exc` says the database is busy for now (a lock held too long, a
    connection lost); None for anything else."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return 1
    if isinstance(exc, OperationalError) and any(m in str(exc.orig).lower() for m in TRANSIENT_MESSAGES):
        return 2
    return None


__all__ = [
    "Base",
    "DatabaseError",
    "RowId",
    "UTCDateTime",
    "begin_write",
    "make_engine",
    "make_session_factory",
    "utcnow",
]
