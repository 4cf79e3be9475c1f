"""ASGI middleware: request-body caps per path, and admission of searches to the model scheduler."""

import json
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embeddings import ModelScheduler, SchedulerBusy


class BodyTooLarge(HTTPException):
    """A body without a declared length grew past the limit while being read. An HTTPException, because
    FastAPI turns any other error raised while it parses a body into a 400."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is larger than the {max_bytes:,}-byte limit")


Reject = Callable[[str], None]  # counts a refusal by its reason (the metrics)


def ignore(_reason: str) -> None:
    pass


class BodySizeLimit:
    def __init__(self, app: ASGIApp, limits: dict[str, int], reject: Reject = ignore) -> None:
        """`limits` maps path prefixes to byte limits; the longest prefix that the path equals or continues
        with a "/" wins ("" matches all)."""
        self.app = app
        self.limits = sorted(limits.items(), key=lambda item: -len(item[0]))
        self.reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            max_bytes = next(limit for prefix, limit in self.limits if _under(scope["path"], prefix))
            length = dict(scope["headers"]).get(b"content-length", b"")
            if length.isdigit() and int(length) > max_bytes:
                self.reject("body_too_large")
                await send_json(send, 413, f"request body is larger than the {max_bytes:,}-byte limit")
                return
            receive = _capped(receive, max_bytes, self.reject)
        await self.app(scope, receive, send)


def _under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix.rstrip("/") + "/")


def _capped(receive: Receive, max_bytes: int, reject: Reject) -> Receive:
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > max_bytes:  # a chunked body that did not declare its length
            reject("body_too_large")  # counted like a declared one
            raise BodyTooLarge(max_bytes)
        return message

    return capped


async def send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A complete JSON error response, {"detail": ...}, sent straight from middleware."""
    body = json.dumps({"detail": detail}).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*start, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class AdmitSearches:
    """Admit a search to the model scheduler the moment it arrives, before its upload is even parsed, so a
    forming batch waits for it instead of running half full. The ticket goes to the route in the request's
    state, and is released when the search has its vectors or the request ends. With too many searches
    already waiting, the search is refused with 503 and Retry-After rather than queued."""

    def __init__(self, app: ASGIApp, scheduler: ModelScheduler, path: str, reject: Reject = ignore) -> None:
        self.app = app
        self.scheduler = scheduler
        self.path = path
        self.reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            ticket = self.scheduler.admit()
        except SchedulerBusy as busy:
            self.reject("searches_waiting")
            retry = str(busy.retry_after_s).encode()
            await send_json(send, 503, str(busy), [(b"retry-after", retry)])
            return
        with ticket:
            scope.setdefault("state", {})["ticket"] = ticket
            await self.app(scope, receive, send)
