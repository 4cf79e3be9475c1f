"""Logging: one line per event, as JSON for a server (with the request's id) or as text for a person at the
command line. What third-party libraries narrate at start (open_clip's model-building steps) is kept out."""

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

# The id of the request being served, carried into the threads that serve it (set by the API's middleware).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# What these say below ERROR is nothing an operator needs; open_clip's errors come back as our own one line.
CHATTY = ("faiss.loader", "timm", "alembic")
SILENT = ("open_clip",)


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.__dict__.pop("color_message", None)  # uvicorn's terminal colours
        return True


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _from(record, SILENT):
            return False
        return record.levelno >= logging.ERROR or not _from(record, CHATTY)


def _from(record: logging.LogRecord, packages: tuple[str, ...]) -> bool:
    return any(f"/{name}/" in record.pathname or record.name.startswith(name) for name in packages)


def configure(fmt: str, level: int = logging.INFO) -> None:
    """`fmt`: "json" (a server) or "text" (a person)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}{request_id}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RequestId())
    handler.addFilter(_Quiet())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The client's transport logs every request at INFO: the CLI's user wants the answer, not the wire.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # through the root handler, in its format
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
