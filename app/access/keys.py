"""API keys: high-entropy tokens shown once at creation, stored as their SHA-256, revocable, with a name, a
role, for a factory key the factories it may write, and when each was created and last used.

A SHA-256 rather than a slow password hash: the token is 256 random bits, so there is nothing to guess, and
every request checks one (as GitHub's and Stripe's token stores do).
"""

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import ApiKey
from app.core.access import Principal, Role
from app.core.db import utcnow
from app.core.errors import AuthenticationError, InvalidInputError, NotFoundError
from app.core.ids import ID_PATTERN

TOKEN_PREFIX = "slk_"
PREFIX_CHARS = 12  # shown in listings: "slk_" and 8 characters of the secret
LAST_USED_RESOLUTION = timedelta(minutes=1)  # last_used_at is written at most this often per key
MAX_FACTORIES_PER_KEY = 100
_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    role: Role
    factory_ids: list[str]
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewKey:
    info: KeyInfo
    token: str  # shown once; only its hash is stored


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def create(self, name: str, role: Role | str, factory_ids: Iterable[str] = ()) -> NewKey:
        role, factories = _checked(name, role, factory_ids)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.sessions() as session:
            key = ApiKey(
                name=name,
                role=role.value,
                factory_ids=factories,
                prefix=token[:PREFIX_CHARS],
                token_hash=token_hash(token),
            )
            session.add(key)
            session.commit()
            return NewKey(key_info(key), token)

    def list(self) -> list[KeyInfo]:
        with self.sessions() as session:
            return [key_info(key) for key in session.scalars(select(ApiKey).order_by(ApiKey.id))]

    def revoke(self, key_id: int) -> KeyInfo:
        with self.sessions() as session:
            key = session.get(ApiKey, key_id)
            if key is None:
                raise NotFoundError(f"key {key_id} not found")
            key.revoked_at = key.revoked_at or utcnow()
            session.commit()
            return key_info(key)

    def authenticate(self, token: str) -> Principal:
        """The caller behind a token; AuthenticationError for an unknown or revoked one."""
        with self.sessions() as session:
            key = session.scalar(select(ApiKey).where(ApiKey.token_hash == token_hash(token)))
            if key is None or key.revoked_at is not None:
                raise AuthenticationError("unknown or revoked API key")
            now = utcnow()
            if key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION:
                key.last_used_at = now
                session.commit()
            return Principal(Role(key.role), frozenset(key.factory_ids), key.id, key.name)


def key_info(key: ApiKey) -> KeyInfo:
    return KeyInfo(
        id=key.id,
        name=key.name,
        role=Role(key.role),
        factory_ids=list(key.factory_ids),
        prefix=key.prefix,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


def _checked(name: str, role: Role | str, factory_ids: Iterable[str]) -> tuple[Role, list[str]]:
    try:
        role = Role(role)
    except ValueError:
        raise InvalidInputError(f"role must be one of {', '.join(r.value for r in Role)}, not {role!r}") from None
    if not 1 <= len(name) <= 255:
        raise InvalidInputError("a key's name must be 1-255 characters")
    factories = sorted(set(factory_ids))
    if role == Role.FACTORY and not factories:
        raise InvalidInputError("a factory key needs the ids of the factories it may write")
    if role != Role.FACTORY and factories:
        raise InvalidInputError(f"only factory keys are bound to factories, not {role.value} keys")
    if len(factories) > MAX_FACTORIES_PER_KEY:
        raise InvalidInputError(f"a key may be bound to at most {MAX_FACTORIES_PER_KEY} factories")
    if bad := [f for f in factories if not _ID.match(f)]:
        raise InvalidInputError(f"not factory ids: {bad[:3]}")
    return role, factories
