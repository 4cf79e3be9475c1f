"""Map domain errors onto HTTP status codes, always with a {"detail": message} body."""

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.core.errors import ConflictError, InvalidInputError, NotFoundError, PayloadTooLargeError
from app.ingest.fetch import FetchError
from embeddings import ImageTooLarge, NotAnImage, TextNotSupported

STATUS: dict[type[Exception], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    InvalidInputError: 422,
    PayloadTooLargeError: 413,
    ImageTooLarge: 413,
    NotAnImage: 422,
    FetchError: 422,
    TextNotSupported: 400,
}


def install_error_handlers(app: FastAPI) -> None:
    for error_type, status in STATUS.items():
        app.add_exception_handler(error_type, _handler(status))


def _handler(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    return handle
