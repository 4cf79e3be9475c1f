"""Map domain errors onto HTTP status codes, always with a {"detail": message} body."""

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.core.db import DatabaseError, transient_retry_after
from app.core.errors import (
    AuthenticationError,
    BusyError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
)
from app.ingest.fetch import FetchError
from embeddings import ImageTooLarge, NotAnImage, TextNotSupported

STATUS: dict[type[Exception], int] = {
    AuthenticationError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    InvalidInputError: 422,
    PayloadTooLargeError: 413,
    ImageTooLarge: 413,
    NotAnImage: 422,
    FetchError: 422,
    TextNotSupported: 400,
}
Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]


def install_error_handlers(app: FastAPI) -> None:
    for error_type, status in STATUS.items():
        app.add_exception_handler(error_type, _handler(status))
    app.add_exception_handler(BusyError, _busy)
    app.add_exception_handler(DatabaseError, _database)
    app.add_exception_handler(RecursionError, _too_deep)
    app.add_exception_handler(RequestValidationError, _invalid)


def _handler(status: int) -> Handler:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(status_code=status, content={"detail": str(exc)}, headers=headers)

    return handle


async def _busy(_request: Request, exc: Exception) -> JSONResponse:
    retry = exc.retry_after_s if isinstance(exc, BusyError) else 1
    return JSONResponse(status_code=503, content={"detail": str(exc)}, headers={"Retry-After": str(retry)})


async def _database(request: Request, exc: Exception) -> JSONResponse:
    """A database that is busy for now (a locked SQLite file, a lost connection) is a 503 to retry; anything
    else is the server's fault and stays a 500."""
    if (retry := transient_retry_after(exc)) is None:
        raise exc
    detail = "the database is busy; retry shortly"
    return JSONResponse(status_code=503, content={"detail": detail}, headers={"Retry-After": str(retry)})


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, without echoing the input back: it may be huge, or a number JSON cannot carry (inf)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in errors]
    return JSONResponse(status_code=422, content={"detail": detail})


async def _too_deep(_request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": "the request is nested too deeply"})
