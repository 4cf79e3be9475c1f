"""Migrations: a fresh database migrates to exactly what the models declare (the autogenerate check, on SQLite
and PostgreSQL); a database made before migrations keeps its rows; ids are never reused; a database behind
the code is refused with the command to run when auto-migration is off; the `db` commands."""

import logging

import pytest
from alembic import command
from sqlalchemy import Engine, text

from app import cli
from app.core.config import Settings
from app.core.db import make_engine, make_session_factory
from app.database import SchemaError, _config, head_revision, open_database, revisions, schema_differences, upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'm.db'}" if request.param == "sqlite" else request.getfixturevalue("empty_postgres_url")
    )
    engine = make_engine(url)
    yield engine
    engine.dispose()


def migrate_to(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        command.upgrade(_config(connection), revision)


def add_rows(engine: Engine, images: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO factories (id, name, attributes, created_at) VALUES ('F1', 'Acme', '{}', :now)"),
            {"now": "2026-01-01 00:00:00+00"},
        )
        connection.execute(
            text(
                "INSERT INTO products (id, factory_id, title, attributes, created_at) "
                "VALUES ('P1', 'F1', 'Cup', '{}', :now)"
            ),
            {"now": "2026-01-01 00:00:00+00"},
        )
        for number in range(images):
            connection.execute(
                text(
                    "INSERT INTO images (product_id, content_hash, source, width, height, embedder, embedding, "
                    "created_at) VALUES ('P1', :hash, 's', 1, 1, 'm', :blob, :now)"
                ),
                {"hash": f"h{number}", "blob": b"\0" * 16, "now": "2026-01-01 00:00:00+00"},
            )


def test_a_fresh_database_migrates_to_exactly_the_models(empty_engine):
    assert revisions(empty_engine) == (None, head_revision())
    assert upgrade(empty_engine) == (None, head_revision())
    assert schema_differences(empty_engine) == []
    assert upgrade(empty_engine) == (head_revision(), head_revision())  # twice: nothing to do


def test_a_database_made_before_migrations_keeps_its_rows_and_never_reuses_ids(empty_engine):
    migrate_to(empty_engine, "0001")
    add_rows(empty_engine, images=3)
    with empty_engine.begin() as connection:  # what create_all left: the tables, no revision
        connection.execute(text("DROP TABLE alembic_version"))
    assert revisions(empty_engine)[0] is None

    assert upgrade(empty_engine) == ("0001", head_revision())
    assert schema_differences(empty_engine) == []
    with empty_engine.begin() as connection:
        assert connection.execute(text("SELECT id FROM images ORDER BY id")).scalars().all() == [1, 2, 3]
        assert connection.execute(text("SELECT name FROM factories")).scalar_one() == "Acme"
        connection.execute(text("DELETE FROM images WHERE id = 3"))  # the newest image, deleted
    add_more = text(
        "INSERT INTO images (product_id, content_hash, source, width, height, embedder, embedding, created_at) "
        "VALUES ('P1', 'new', 's', 1, 1, 'm', :blob, '2026-01-02 00:00:00+00')"
    )
    with empty_engine.begin() as connection:
        connection.execute(add_more, {"blob": b"\0" * 16})
        newest = connection.execute(text("SELECT max(id) FROM images")).scalar_one()
    assert newest == 4  # not 3: an index that still held 3 would otherwise give the new image the old one's vector


def test_a_database_made_by_create_all_with_api_keys_is_stamped_at_that_schema(empty_engine, caplog):
    migrate_to(empty_engine, "0002")  # api_keys came with the last schema create_all made
    add_rows(empty_engine, images=1)
    with empty_engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    with caplog.at_level(logging.INFO, logger="app.database"):
        assert upgrade(empty_engine) == ("0002", head_revision())  # not replayed from 0001: api_keys exists
    assert f"database migrated from 0002 to {head_revision()}" in caplog.text
    assert schema_differences(empty_engine) == []
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="app.database"):
        upgrade(empty_engine)
    assert "migrated" not in caplog.text  # nothing to do, nothing said


def test_a_column_of_another_type_is_a_difference_named_by_table_and_column(empty_postgres_url):
    engine = make_engine(empty_postgres_url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE factories ALTER COLUMN name TYPE TEXT"))
    differences = schema_differences(engine)
    engine.dispose()
    assert len(differences) == 1 and "modify_type" in differences[0] and "'factories', 'name'" in differences[0]


def test_opening_a_new_database_migrates_it_and_gives_working_sessions(tmp_path):
    engine, sessions = open_database(Settings(data_dir=tmp_path))
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM factories")).scalar_one() == 0
    assert revisions(engine)[0] == head_revision()
    engine.dispose()


def test_with_auto_migration_off_a_database_behind_is_refused_with_the_command(tmp_path):
    settings = Settings(data_dir=tmp_path, auto_migrate=False)
    with pytest.raises(
        SchemaError, match=f"schema is at none, this code needs {head_revision()}: run `sourcelens db upgrade`"
    ):
        open_database(settings)
    behind = make_engine(settings.resolved_database_url)
    migrate_to(behind, "0001")
    behind.dispose()
    with pytest.raises(SchemaError, match="schema is at 0001, "):
        open_database(settings)
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    engine.dispose()
    engine, sessions = open_database(settings)
    assert sessions is not None and revisions(engine)[0] == head_revision()
    engine.dispose()


def test_the_db_commands(tmp_path, capsys):
    base = ["--data-dir", str(tmp_path)]
    assert cli.main([*base, "db", "current"]) == 1
    assert "database at none; the newest is" in capsys.readouterr().out
    assert cli.main([*base, "db", "upgrade"]) == 0
    assert f"database at {head_revision()} (was empty)" in capsys.readouterr().out
    assert cli.main([*base, "db", "upgrade"]) == 0
    assert "the newest" in capsys.readouterr().out
    assert cli.main([*base, "db", "current"]) == 0
    assert cli.main([*base, "db", "check"]) == 0
    assert "models and migrations agree" in capsys.readouterr().out


def test_the_upgrade_is_safe_when_several_processes_start_at_once(empty_postgres_url):
    import threading

    engines = [make_engine(empty_postgres_url) for _ in range(3)]
    results: list[object] = []

    def start(engine: Engine) -> None:
        try:
            results.append(upgrade(engine)[1])
        except Exception as exc:  # recorded for the assertion
            results.append(exc)

    threads = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [head_revision()] * 3  # one migrates, the others wait for its lock and find nothing to do
    assert schema_differences(engines[0]) == []
    sessions = make_session_factory(engines[0])
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    for engine in engines:
        engine.dispose()
