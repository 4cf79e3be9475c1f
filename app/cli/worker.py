"""`sourcelens worker`: a process that runs ingest and batch-query jobs, and serves no HTTP.

Workers share the server's database (PostgreSQL: each claims a different job with `SELECT ... FOR UPDATE SKIP
LOCKED`, keeps it with heartbeats, and takes over a job whose worker died) and its media directory. The server then
runs with SOURCELENS_RUN_JOBS=false. With the FAISS index (the default vector store) a worker keeps its index in
memory and never writes the data directory's index, which the server owns: other processes see what a worker
ingested when they next start (the index is reconciled with the database at start). A Milvus server
(SOURCELENS_VECTOR_STORE=milvus://host:port) is shared by all, and every process sees writes at once.
"""

import argparse
import logging
import signal
import threading
from types import FrameType

from app.core.config import Settings

log = logging.getLogger("sourcelens")


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    worker = commands.add_parser(
        "worker", help="run ingest and batch-query jobs from the shared database, without serving HTTP"
    )
    worker.set_defaults(handler=cmd_worker)


def shared_store(settings: Settings) -> bool:
    """Whether every process reads and writes the same vectors (a Milvus server), so a worker may write them."""
    return settings.vector_store.startswith("milvus")


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run both job runners until SIGTERM or Ctrl-C; then finish the batch (or photo) in hand, put the job back in
    the queue for another worker, and exit 0."""
    from app.bootstrap import build_services
    from app.core.errors import InvalidInputError

    if settings.vector_store != "faiss" and not shared_store(settings):
        raise InvalidInputError(
            f"a Milvus Lite file ({settings.vector_store}) serves one process: run the jobs in the server, or use "
            "SOURCELENS_VECTOR_STORE=milvus://host:port"
        )
    if not shared_store(settings):
        log.warning(
            "the FAISS index is this worker's own, in memory: searches in other processes see what it ingests "
            "only after they restart (SOURCELENS_VECTOR_STORE=milvus://host:port shares one index)"
        )
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    services = build_services(settings, saves_index=shared_store(settings))
    try:
        services.runner.start(requeue_interrupted=False)  # other workers may hold the running jobs
        services.query_runner.start()
        log.info(
            "SourceLens worker %s: model %s, %d images, index %s, database %s",
            services.runner.worker,
            services.model.name,
            len(services.index),
            services.index.describe(),
            services.engine.url.render_as_string(hide_password=True),
        )
        while not stopping.wait(1.0):
            pass
        log.info("worker %s stopping after the work in hand", services.runner.worker)
        services.runner.request_stop()
        services.query_runner.request_stop()
        services.runner.stop(timeout=max(30.0, settings.shutdown_grace_s))
        services.query_runner.stop()
    finally:
        services.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
