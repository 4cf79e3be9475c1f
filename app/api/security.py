"""Who may call which route. Every API route declares one policy, through one of the caller aliases below
(or `public`); tests/api/test_access.py fails for a route that declares none, and tries every role on every
route.

Keys come as `Authorization: Bearer <key>` or `X-API-Key: <key>`; both are declared in the OpenAPI document,
so /docs has an Authorize button. A missing, unknown or revoked key is a 401; a key without the right, a 403.
"""

from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.access.keys import KeyStore
from app.core.access import Principal, Role
from app.core.errors import AuthenticationError, ForbiddenError

bearer = HTTPBearer(auto_error=False, description="An API key, sent as `Authorization: Bearer slk_...`.")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key, sent as `X-API-Key`.")


class Policy(StrEnum):
    PUBLIC = "public"  # anyone: health
    READ = "read"  # search and public catalogue reads: any key; no key when SOURCELENS_ANONYMOUS_SEARCH is on
    WRITE = "write"  # catalogue writes and ingest jobs: admin and factory keys (services check which factories)
    ADMIN = "admin"  # managing keys
    METRICS = "metrics"  # an admin key, or anyone when SOURCELENS_METRICS_PUBLIC is on

    def admits(self, caller: Principal, anonymous_search: bool, metrics_public: bool = False) -> bool:
        if self == Policy.PUBLIC or (self == Policy.METRICS and metrics_public):
            return True
        if caller.role is None:
            return self == Policy.READ and anonymous_search
        if self == Policy.READ:
            return True
        if self == Policy.WRITE:
            return caller.role in (Role.ADMIN, Role.FACTORY)
        return caller.role == Role.ADMIN


def requires(policy: Policy) -> "Requires":
    """A dependency that identifies the caller and refuses one the policy does not admit."""
    return Requires(policy)


class Requires:
    """The dependency itself: FastAPI reads its parameters from __call__, run at every request."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy  # read by the route-table test

    def __call__(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        api_key: Annotated[str | None, Depends(api_key_header)],
    ) -> Principal:
        return identify(self.policy, request, credentials.credentials if credentials else api_key)


def identify(policy: Policy, request: Request, token: str | None) -> Principal:
    """The caller behind `token` (anonymous without one), refused unless the policy admits it."""
    keys: KeyStore = request.state.keys
    principal = keys.authenticate(token) if token else Principal(None)
    settings = request.state.settings
    if not policy.admits(principal, settings.anonymous_search, settings.metrics_public):
        if principal.role is None:
            raise AuthenticationError("an API key is required: send Authorization: Bearer <key>")
        raise ForbiddenError(f"a {principal.role.value} key may not do this")
    return principal


def public() -> None:
    """Open to anyone (health checks)."""


public.policy = Policy.PUBLIC  # type: ignore[attr-defined]

ReadCaller = Annotated[Principal, Depends(requires(Policy.READ))]
WriteCaller = Annotated[Principal, Depends(requires(Policy.WRITE))]
AdminCaller = Annotated[Principal, Depends(requires(Policy.ADMIN))]
MetricsCaller = Annotated[Principal, Depends(requires(Policy.METRICS))]
Public = Depends(public)
