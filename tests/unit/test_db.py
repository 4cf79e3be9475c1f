"""The SQLite engine: every pooled connection is set up the same way (WAL, foreign keys, memory-mapped reads)."""

from sqlalchemy import text

from app.core.db import SQLITE_MMAP_BYTES, make_engine


def test_every_sqlite_connection_gets_the_pragmas(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with engine.connect() as first, engine.connect() as second:  # two pooled connections, each set up
            for connection in (first, second):
                assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
                assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
                assert connection.execute(text("PRAGMA mmap_size")).scalar() == SQLITE_MMAP_BYTES
    finally:
        engine.dispose()
