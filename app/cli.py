"""`sourcelens` command line: ingest, search, serve, demo, reindex."""

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from app.core import logs
from app.core.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from tqdm import tqdm

    from app.access.keys import KeyStore
    from app.bootstrap import Services

log = logging.getLogger("sourcelens")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _settings(args)
    server = args.handler in (cmd_serve, cmd_demo)
    logs.configure(settings.log_format if settings.log_format != "auto" else ("json" if server else "text"))
    try:
        return int(args.handler(args, settings))
    except Exception as exc:  # one line for expected failures; the trace only with --debug
        from sqlalchemy.exc import SQLAlchemyError

        from app.core.errors import ServiceError
        from embeddings import ImageError, ModelLoadError
        from index import IndexMismatchError

        expected = ServiceError | ImageError | ModelLoadError | IndexMismatchError | OSError | SQLAlchemyError
        if args.debug or not isinstance(exc, expected):
            raise
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        print(f"error: {reason[0] if reason else type(exc).__name__}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sourcelens", description="Reverse-image supplier search.")
    parser.add_argument("--data-dir", type=Path, help="data directory (SOURCELENS_DATA_DIR)")
    parser.add_argument("--model", help="embedder spec (SOURCELENS_MODEL), e.g. effnet-lite0")
    parser.add_argument("--database-url", help="SQLAlchemy URL (SOURCELENS_DATABASE_URL)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="add or update catalogue images from a CSV manifest")
    ingest.add_argument("manifest", type=Path)
    ingest.set_defaults(handler=cmd_ingest)

    search = commands.add_parser("search", help="rank source factories for a product photo")
    search.add_argument("photo", type=Path)
    search.add_argument("--top-k", type=int, default=None, help="how many factories (default 10)")
    search.add_argument("--json", action="store_true", help="print the API's JSON body")
    search.add_argument("--bbox", help="the product's box in the photo: x0,y0,x1,y1 (pixels or 0..1)")
    search.add_argument("--include-weak", action="store_true", help="list candidates without a confident match")
    search.set_defaults(handler=cmd_search)

    for name, handler, text in (
        ("serve", cmd_serve, "serve the web page and the HTTP API"),
        ("demo", cmd_demo, "ingest the bundled sample catalogue and serve it"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--host", help="bind address (SOURCELENS_HOST, default 127.0.0.1)")
        command.add_argument("--port", type=int, help="port (SOURCELENS_PORT, default 8000)")
        command.set_defaults(handler=handler)
    commands.choices["demo"].add_argument("--no-serve", action="store_true", help="ingest only, then exit")

    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    actions = keys.add_subparsers(required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print its token (shown this once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--role", required=True, choices=["admin", "factory", "search"])
    create.add_argument("--factory", action="append", default=[], help="a factory a factory key may write")
    create.set_defaults(handler=cmd_keys_create)
    actions.add_parser("list", help="list keys (never their tokens)").set_defaults(handler=cmd_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key: it stops working at once")
    revoke.add_argument("key_id", type=int)
    revoke.set_defaults(handler=cmd_keys_revoke)

    database = commands.add_parser("db", help="the database's schema: upgrade, show, check")
    steps = database.add_subparsers(required=True, metavar="ACTION")
    steps.add_parser("upgrade", help="migrate to the newest schema").set_defaults(handler=cmd_db_upgrade)
    steps.add_parser("current", help="the schema's revision, and the newest").set_defaults(handler=cmd_db_current)
    steps.add_parser("check", help="fail if the models and the migrations disagree").set_defaults(handler=cmd_db_check)

    calibrate = commands.add_parser("calibrate", help="fit the match levels' thresholds on this catalogue")
    calibrate.add_argument("--target", type=float, default=0.01, help="rate of confident wrong answers (0.01)")
    calibrate.add_argument("--copies", type=int, default=300, help="catalogue images queried as copies (300)")
    calibrate.add_argument("--unknown", type=int, default=150, help="products searched as unknown ones (150)")
    calibrate.add_argument("--seed", type=int, default=0)
    calibrate.add_argument("--show", action="store_true", help="print the calibration in use, run nothing")
    calibrate.set_defaults(handler=cmd_calibrate)

    reindex = commands.add_parser("reindex", help="re-embed the catalogue with the configured model")
    reindex.add_argument("--force", action="store_true", help="re-embed images already embedded by this model")
    reindex.set_defaults(handler=cmd_reindex)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None) for name in ("data_dir", "model", "database_url", "host", "port")}
    return Settings(**{name: value for name, value in overrides.items() if value is not None})


def _progress_bar(total: int, unit: str) -> "tqdm[Any]":
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=not sys.stderr.isatty(), file=sys.stderr)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from app.bootstrap import build_services
    from app.ingest.manifest import ManifestLimits, read_manifest

    limits = ManifestLimits(settings.max_manifest_rows, settings.max_attributes_bytes)
    total = len(read_manifest(args.manifest, limits))  # a bad header fails before the model loads
    services = build_services(settings)
    try:
        with _progress_bar(total, "img") as bar:
            report = services.ingest.ingest_manifest(args.manifest, bar.update)
    finally:
        services.close()
    for error in report.errors:
        print(f"line {error.line}: {error.image}: {error.reason}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed and not (report.added or report.unchanged or report.updated) else 0


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from app.api.mapping import search_read
    from app.bootstrap import build_services
    from app.search.options import QueryPhoto, SearchOptions

    photo = QueryPhoto(args.photo.read_bytes(), args.bbox)
    top_k = settings.default_top_k if args.top_k is None else args.top_k
    options = SearchOptions(top_k=top_k, include_weak=args.include_weak)
    services = build_services(settings)
    try:
        body = search_read(services.search.run([photo], None, options))
    finally:
        services.close()
    if args.json:
        print(json.dumps(body.model_dump(), indent=2))
        return 0
    if body.message:
        print(body.message)
    for rank, factory in enumerate(body.factories, 1):
        best = ", ".join(f"{m.product_id} ({m.match_level} {m.similarity:.3f})" for m in factory.matches[:3])
        print(f"{rank:>2}. {factory.score:.3f}  {factory.name} [{factory.factory_id}, {factory.region or '-'}]  {best}")
    print(f"({body.took_ms:.0f} ms)")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings, services: "Services | None" = None) -> int:
    """Serve until SIGTERM or Ctrl-C: then stop taking requests, finish those in flight (within
    SOURCELENS_SHUTDOWN_GRACE_S), stop the job runner after its batch and save the index."""
    import uvicorn

    from app.bootstrap import build_services
    from app.main import create_app

    class _Server(uvicorn.Server):
        """Tells the job worker to stop at the signal itself, so its batch ends while the requests in flight
        finish, rather than after them (a job could otherwise run on through the whole grace period)."""

        def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
            super().__init__(config)
            self.on_exit = on_exit

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self.on_exit()
            super().handle_exit(sig, frame)

    own = services is None
    services = services or build_services(settings)  # before listening: a model that cannot load fails now
    model, index = services.model, services.index
    log.info(
        "SourceLens serving http://%s:%d: model %s (%s), %d images, index %s, data in %s",
        settings.host,
        settings.port,
        model.name,
        model.precision,
        len(index),
        index.describe(),
        settings.data_dir,
    )
    config = uvicorn.Config(
        create_app(settings, services),
        host=settings.host,
        port=settings.port,
        log_config=None,  # our handler and format (logs.configure)
        access_log=False,  # requests are logged by the app, with their ids
        timeout_graceful_shutdown=round(settings.shutdown_grace_s),
    )
    try:
        _Server(config, on_exit=services.runner.request_stop).run()
    finally:
        if own:
            services.close()
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from app.bootstrap import build_services
    from app.demo import demo_catalogue, demo_keys, demo_model

    manifest = demo_catalogue(settings)
    settings.anonymous_search = True  # the page searches without a key; writes still need one
    services = build_services(settings, demo_model(settings, model_given=settings.model is not None))
    try:
        report = services.ingest.ingest_manifest(manifest)
        print(f"sample catalogue: {report.summary()}")
        for line in demo_keys(services.keys, settings.data_dir):
            print(line)
        if args.no_serve:
            return 0
        print(f"SourceLens demo: open http://{settings.host}:{settings.port}/ (API docs at /docs)")
        return cmd_serve(args, settings, services)
    finally:
        services.close()


def _keys(settings: Settings) -> "KeyStore":
    from app.access.keys import KeyStore
    from app.database import open_database

    return KeyStore(open_database(settings)[1])


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    new = _keys(settings).create(args.name, args.role, args.factory)
    factories = f" for {', '.join(new.info.factory_ids)}" if new.info.factory_ids else ""
    print(f"key {new.info.id} ({new.info.role.value}{factories}): {new.token}")
    print("Store it now: it is shown this once. Send it as 'Authorization: Bearer <key>'.", file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    for key in _keys(settings).list():
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
        factories = ",".join(key.factory_ids) or "-"
        print(f"{key.id:>4}  {key.prefix}…  {key.role.value:<7}  {factories:<20}  used {used:<16}  {state}  {key.name}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    key = _keys(settings).revoke(args.key_id)
    print(f"key {key.id} ({key.name}) revoked")
    return 0


def _engine(settings: Settings) -> "Engine":
    from app.core.db import make_engine

    settings.ensure_dirs()
    return make_engine(settings.resolved_database_url, settings.lock_wait_s)


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from app.database import upgrade

    before, now = upgrade(_engine(settings))
    print(f"database at {now} (was {before or 'empty'})" if before != now else f"database at {now}, the newest")
    return 0


def cmd_db_current(args: argparse.Namespace, settings: Settings) -> int:
    from app.database import revisions

    current, head = revisions(_engine(settings))
    print(f"database at {current or 'none'}; the newest is {head}")
    return 0 if current == head else 1


def cmd_db_check(args: argparse.Namespace, settings: Settings) -> int:
    """On a scratch copy of the schema, migrated from nothing: do the models and the migrations agree?"""
    import tempfile

    from app.core.db import make_engine
    from app.database import schema_differences, upgrade

    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{scratch}/check.db")
        upgrade(engine)
        differences = schema_differences(engine)
        engine.dispose()
    for difference in differences:
        print(difference)
    print("models and migrations agree" if not differences else f"{len(differences)} difference(s)")
    return 1 if differences else 0


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from app.bootstrap import build_services
    from app.calibration.service import CalibrationPlan
    from app.core.errors import InvalidInputError

    if not 0 < args.target < 0.5:
        raise InvalidInputError(f"--target is a rate between 0 and 0.5, got {args.target}")
    services = build_services(settings)
    try:
        if args.show:
            info = services.calibration.current()
        else:
            plan = CalibrationPlan(args.target, args.copies, args.unknown, args.seed)
            with _progress_bar(plan.copies + plan.unknown, "queries") as bar:
                info = services.calibration.run(plan, bar.update)
    finally:
        services.close()
    thresholds = info.thresholds
    print(
        f"thresholds ({thresholds.source}): near_duplicate {thresholds.near_duplicate}, "
        f"max_region {thresholds.max_region}, max_strokes {thresholds.max_strokes}, "
        f"min_visible {thresholds.min_visible}"
    )
    if info.rates is not None:
        rates = info.rates
        print(
            f"measured on {rates.queries} queries (target {info.target:.1%}): "
            f"confident wrong {rates.confident_wrong:.1%} "
            f"(wrong factory {rates.wrong_factory:.1%} of copies, unknown products {rates.unknown_confident:.1%}), "
            f"confident right {rates.confident_right:.1%} of copies"
        )
    if info.stale:
        print("the catalogue has grown by more than a fifth since: run `sourcelens calibrate` again")
    return 0


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    from app.bootstrap import load_model
    from app.catalog.media import MediaStore
    from app.catalog.reindex import count_images, rebuild_index, reembed
    from app.database import open_database

    engine, sessions = open_database(settings)
    model = load_model(settings)
    with sessions() as session, _progress_bar(count_images(session), "img") as bar:
        done = reembed(sessions, model, MediaStore(settings.media_dir), bar.update, force=args.force)
    index = rebuild_index(sessions, model, settings.index_dir, settings.index, settings.index_ivf_threshold)
    engine.dispose()
    print(f"re-embedded {done} images with {model.name}; the index holds {len(index)} vectors ({index.describe()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
