"""ASGI middleware that protects the service as a whole: the Host header (DNS rebinding), cross-origin writes,
rate limits per key and per client address, and security headers on every response."""

from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.access.limiter import RateLimiter
from app.api.middleware import Reject, ignore, send_json

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# No inline script or style anywhere; nothing may frame the page.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The /docs and /redoc pages start Swagger UI and ReDoc (served from this server) with an inline script.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"].startswith(DOCS_PATHS) else CSP

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("content-security-policy", csp)
            await send(message)

        await self.app(scope, receive, with_headers)


class HostCheck:
    """Answer only requests addressed to a trusted host: a page on another site whose name was made to resolve to
    this server (DNS rebinding) sends its own name, and is refused."""

    def __init__(self, app: ASGIApp, hosts: list[str], reject: Reject = ignore) -> None:
        self.app = app
        self.reject = reject
        self.any = "*" in hosts
        self.hosts = {host.lower() for host in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.any:
            host = _hostname(Headers(scope=scope).get("host", ""))
            if host not in self.hosts:
                self.reject("host")
                detail = f"host {host!r} is not served here; add it to SOURCELENS_ALLOWED_HOSTS"
                await send_json(send, 400, detail)
                return
        await self.app(scope, receive, send)


class OriginCheck:
    """Refuse writes sent by a browser from another site (a cross-origin form post needs no preflight), unless
    that origin is configured; requests without an Origin header (tools, servers) pass."""

    def __init__(self, app: ASGIApp, origins: list[str], reject: Reject = ignore) -> None:
        self.app = app
        self.reject = reject
        self.origins = {origin.rstrip("/").lower() for origin in origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None and not self._allowed(origin, headers.get("host", "")):
                self.reject("origin")
                detail = f"cross-origin requests from {origin!r} are refused; add it to SOURCELENS_CORS_ORIGINS"
                await send_json(send, 403, detail)
                return
        await self.app(scope, receive, send)

    def _allowed(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        return origin in self.origins or urlsplit(origin).netloc == host.lower()


class RateLimit:
    """Count every API request against its client address and, when it carries one, its key; 429 with
    Retry-After past either limit. Health and the page's static files are not counted."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, reject: Reject = ignore, prefix: str = "/api/") -> None:
        self.app = app
        self.limiter = limiter
        self.reject = reject
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            client = scope.get("client")
            refusal = self.limiter.hit(client[0] if client else "unknown", _token(Headers(scope=scope)))
            if refusal is not None:
                self.reject(f"rate_limit_{refusal.scope}")
                detail = f"rate limit of {refusal.limit} per {refusal.scope} reached; retry in {refusal.retry_after_s}s"
                await send_json(send, 429, detail, [(b"retry-after", str(refusal.retry_after_s).encode())])
                return
        await self.app(scope, receive, send)


def _token(headers: Headers) -> str | None:
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return headers.get("x-api-key")


def _hostname(host: str) -> str:
    """The Host header without its port (an IPv6 literal keeps its brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
