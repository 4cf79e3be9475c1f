"""The commands that work on a data directory: ingest, serve, demo, keys, db, calibrate, reindex."""

import argparse
import json  # noqa: F401  (kept for commands printing JSON)
import logging
import os
import sys
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING, Any

from app.core.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from tqdm import tqdm

    from app.access.keys import KeyStore
    from app.bootstrap import Services
    from index import VectorIndex

log = logging.getLogger("sourcelens")


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

    if getattr(args, "workers", 1) > 1:
        return _serve_processes(args.workers, settings)
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


def _move_store(store: str, settings: Settings) -> int:
    """`reindex --to STORE`: the stored embeddings into another vector store (app/catalog/move.py)."""
    from pydantic import ValidationError

    from app.catalog.index_sync import stored_embedder
    from app.catalog.move import move_vectors
    from app.catalog.reindex import count_images
    from app.core.errors import InvalidInputError
    from app.database import open_database
    from index import open_index

    try:
        Settings(vector_store=store)  # the setting's own check
    except ValidationError:
        raise InvalidInputError(
            f"--to {store!r} is not a vector store: give faiss, milvus://host:port or a Milvus Lite file ending in .db"
        ) from None
    if store == settings.vector_store:
        raise InvalidInputError(f"the vectors are in {store} already; --to names the store to move them to")
    engine, sessions = open_database(settings)
    try:
        with sessions() as session:
            embedder, dim = stored_embedder(session)
            total = count_images(session)
        target = open_index(
            settings.index_dir,
            embedder,
            dim,
            settings.index,
            settings.index_ivf_threshold,
            0,
            store,
            fp16_threshold=settings.index_fp16_threshold,
        )
        try:
            state = settings.data_dir / "reindex-move.json"
            with _progress_bar(total, "img") as bar:
                report = move_vectors(sessions, target, store, state, bar.update)
        finally:
            target.close()
    finally:
        engine.dispose()
    resumed = f" (resumed after image {report.resumed_after})" if report.resumed_after else ""
    print(
        f"copied {report.copied} vectors to {store}{resumed}; {report.total} there now "
        f"({report.added} added and {report.removed} removed while copying)"
    )
    print(
        f"next: set SOURCELENS_VECTOR_STORE={store} and restart the API processes and workers one at a time; "
        "each start adds what was written to the old store meanwhile"
    )
    return 0


def _serve_processes(count: int, settings: Settings) -> int:
    """N API processes on one port (uvicorn's workers), each with its own model and its own app. They must
    share every piece of state: the database, and a vector store that several processes may read and write
    (a Milvus server); a FAISS index lives inside one process, so it is refused here. Rate limits are shared
    through SOURCELENS_REDIS_URL, else counted per process."""
    import uvicorn

    from app.core.errors import InvalidInputError

    if not settings.vector_store.startswith("milvus"):
        raise InvalidInputError(
            f"--workers {count} needs a vector store the processes share: set "
            f"SOURCELENS_VECTOR_STORE=milvus://host:port (now {settings.vector_store}; a FAISS index lives inside "
            "one process)"
        )
    if settings.database_url is None or settings.database_url.startswith("sqlite"):
        log.warning("several API processes on SQLite: writes wait for one another; PostgreSQL suits them better")
    # The processes build their settings from the environment: what the command line chose goes there too.
    for name in ("data_dir", "model", "database_url"):
        if (value := getattr(settings, name)) is not None:
            os.environ[f"SOURCELENS_{name.upper()}"] = str(value)
    log.info("SourceLens serving http://%s:%d with %d processes", settings.host, settings.port, count)
    uvicorn.run(
        "app.main:create_app_in_worker_process",
        factory=True,
        workers=count,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=round(settings.shutdown_grace_s),
    )
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from app.bootstrap import build_services
    from app.demo import demo_catalogue, demo_keys, demo_model

    manifest = demo_catalogue(settings)
    settings.anonymous_search = True  # the page searches without a key; writes still need one
    services = build_services(settings, partial(demo_model, settings, model_given=settings.model is not None))
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
        if info.target is not None and rates.confident_wrong > info.target:
            print(
                f"the target was not reached on this catalogue: these are the strictest thresholds tried "
                f"({rates.confident_wrong:.1%} > {info.target:.1%}); docs/ranking.md says why it can happen"
            )
    if info.stale:
        print("the catalogue has grown by more than a fifth since: run `sourcelens calibrate` again")
    return 0


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    if args.to:
        return _move_store(args.to, settings)
    from app.bootstrap import load_model
    from app.catalog.media import MediaStore
    from app.catalog.reindex import count_images, rebuild_index, reembed
    from app.database import open_database

    engine, sessions = open_database(settings)
    model = load_model(settings)
    with sessions() as session, _progress_bar(count_images(session), "img") as bar:
        done = reembed(sessions, model, MediaStore(settings.media_dir), bar.update, force=args.force)
    index: VectorIndex
    if settings.vector_store == "faiss":
        index = rebuild_index(
            sessions,
            model,
            settings.index_dir,
            settings.index,
            settings.index_ivf_threshold,
            settings.index_fp16_threshold,
        )
    else:  # a Milvus collection of the new model's own, filled from the new embeddings
        from app.catalog.move import move_vectors
        from index import open_index

        index = open_index(settings.index_dir, model.name, model.dim, store=settings.vector_store)
        move_vectors(sessions, index, settings.vector_store, settings.data_dir / "reindex-move.json")
    engine.dispose()
    print(f"re-embedded {done} images with {model.name}; the index holds {len(index)} vectors ({index.describe()})")
    index.close()
    return 0
