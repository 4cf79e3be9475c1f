"""`sourcelens` command line: ingest, search, jobs, serve, worker, demo, keys, db, calibrate, reindex.

Commands work on a data directory (`--data-dir`), or, for search and jobs, on a running service (`--server URL
--key K`, through app.client). local.py holds the data-directory commands, worker.py the job worker, search.py
and jobs.py the rest.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from app.cli import jobs, local, queries, saved, search, worker
from app.core import logs
from app.core.config import Settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _settings(args)
    server = args.handler in (local.cmd_serve, local.cmd_demo, worker.cmd_worker)
    logs.configure(settings.log_format if settings.log_format != "auto" else ("json" if server else "text"))
    try:
        return int(args.handler(args, settings))
    except KeyboardInterrupt:  # Ctrl-C; a server re-raises it (uvicorn) once it has shut down cleanly
        if args.debug:
            raise
        logging.getLogger("sourcelens").info("interrupted (Ctrl-C)")  # in the process's log format
        return 130  # what a shell reports for SIGINT
    except Exception as exc:  # one line for expected failures; the trace only with --debug
        if args.debug or not isinstance(exc, _expected_failures()):
            raise
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        print(f"error: {reason[0] if reason else type(exc).__name__}", file=sys.stderr)
        return 2


def _expected_failures() -> tuple[type[Exception], ...]:
    """What a user can act on from one line. The model's failure type is taken only where its module is
    loaded, as it must be for one to have been raised: importing it here would import torch, and make a
    quick command's error (a bad key id, a missing file) take seconds."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.client import SourceLensError
    from app.core.errors import ServiceError
    from index import IndexMismatchError

    loaded = sys.modules.get("embeddings.openclip")
    model: tuple[type[Exception], ...] = (loaded.ModelLoadError,) if loaded else ()
    # ImageError is a ValueError.
    return (ServiceError, IndexMismatchError, OSError, SQLAlchemyError, SourceLensError, ValueError, *model)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sourcelens", description="Reverse-image supplier search.")
    parser.add_argument("--data-dir", type=Path, help="data directory (SOURCELENS_DATA_DIR)")
    parser.add_argument("--model", help="embedder spec (SOURCELENS_MODEL), e.g. effnet-lite0")
    parser.add_argument("--database-url", help="SQLAlchemy URL (SOURCELENS_DATABASE_URL)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument(
        "--server", default=os.environ.get("SOURCELENS_SERVER"), help="use a running service (SOURCELENS_SERVER)"
    )
    parser.add_argument("--key", default=os.environ.get("SOURCELENS_KEY"), help="its API key (SOURCELENS_KEY)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="add or update catalogue images from a CSV manifest")
    ingest.add_argument("manifest", type=Path)
    ingest.set_defaults(handler=local.cmd_ingest)

    search.add_parser(commands)
    jobs.add_parser(commands)
    queries.add_parser(commands)
    saved.add_parser(commands)

    for name, handler, text in (
        ("serve", local.cmd_serve, "serve the web page and the HTTP API"),
        ("demo", local.cmd_demo, "ingest the bundled sample catalogue and serve it"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--host", help="bind address (SOURCELENS_HOST, default 127.0.0.1)")
        command.add_argument("--port", type=int, help="port (SOURCELENS_PORT, default 8000)")
        command.set_defaults(handler=handler)
    commands.choices["demo"].add_argument("--no-serve", action="store_true", help="ingest only, then exit")
    commands.choices["serve"].add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes sharing the port (more than 1 needs SOURCELENS_VECTOR_STORE=milvus://host:port)",
    )
    worker.add_parser(commands)

    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print its token (shown this once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--role", required=True, choices=["admin", "factory", "search"])
    create.add_argument("--factory", action="append", default=[], help="a factory a factory key may write")
    create.set_defaults(handler=local.cmd_keys_create)
    actions.add_parser("list", help="list keys (never their tokens)").set_defaults(handler=local.cmd_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key: it stops working at once")
    revoke.add_argument("key_id", type=int)
    revoke.set_defaults(handler=local.cmd_keys_revoke)

    database = commands.add_parser("db", help="the database's schema: upgrade, show, check")
    steps = database.add_subparsers(required=True, metavar="ACTION")
    steps.add_parser("upgrade", help="migrate to the newest schema").set_defaults(handler=local.cmd_db_upgrade)
    steps.add_parser("current", help="the schema's revision, and the newest").set_defaults(handler=local.cmd_db_current)
    steps.add_parser("check", help="fail if the models and the migrations disagree").set_defaults(
        handler=local.cmd_db_check
    )

    calibrate = commands.add_parser("calibrate", help="fit the match levels' thresholds on this catalogue")
    calibrate.add_argument("--target", type=float, default=0.01, help="rate of confident wrong answers (0.01)")
    calibrate.add_argument("--copies", type=int, default=300, help="catalogue images queried as copies (300)")
    calibrate.add_argument("--unknown", type=int, default=150, help="products searched as unknown ones (150)")
    calibrate.add_argument("--seed", type=int, default=0)
    calibrate.add_argument("--show", action="store_true", help="print the calibration in use, run nothing")
    calibrate.set_defaults(handler=local.cmd_calibrate)

    reindex = commands.add_parser("reindex", help="re-embed the catalogue with the configured model")
    reindex.add_argument("--force", action="store_true", help="re-embed images already embedded by this model")
    reindex.add_argument(
        "--to",
        metavar="STORE",
        help="instead: copy the vectors to another vector store (faiss, milvus://host:port, or a .db file), "
        "resumably, while searches use the current one; then switch SOURCELENS_VECTOR_STORE",
    )
    reindex.set_defaults(handler=local.cmd_reindex)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None) for name in ("data_dir", "model", "database_url", "host", "port")}
    return Settings(**{name: value for name, value in overrides.items() if value is not None})
