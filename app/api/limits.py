"""Refuse oversized request bodies before they are read, parsed or spooled to disk."""

from starlette.types import ASGIApp, Receive, Scope, Send


class BodyTooLarge(Exception):
    """A body without a declared length grew past the limit while being read (mapped to 413)."""


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
            receive = self._capped(receive)
        await self.app(scope, receive, send)

    def _capped(self, receive: Receive) -> Receive:
        seen = 0

        async def capped() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # a chunked body that did not declare its length
                raise BodyTooLarge(f"request body is larger than the {self.max_bytes:,}-byte limit")
            return message

        return capped


async def _too_large(send: Send, max_bytes: int) -> None:
    body = f'{{"detail":"request body is larger than the {max_bytes:,}-byte limit"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
