"""Engine and sessions. SQLite is the embedded default; PostgreSQL (psycopg) is the production path."""

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.models import Base

SQLITE_POOL_SIZE = 32  # connections kept open: requests run on a thread pool of up to 40


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # Requests run in a thread pool, hence check_same_thread=False; the busy timeout lets
        # a search read while an ingest batch commits.
        # The pool holds a connection for each concurrent request (16 clients: 16). SQLAlchemy's default of
        # 5 + 10 overflow closed and reopened connections (and re-ran the pragmas) under load.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=SQLITE_POOL_SIZE,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def create_tables(engine: Engine) -> None:
    Base.metadata.create_all(engine)
