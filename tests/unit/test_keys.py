"""API keys: shown once, stored hashed, revocable, bound to factories; the rate limiter shared through Redis."""

import hashlib

import pytest
from sqlalchemy import select

from app.access.keys import KeyStore
from app.access.limiter import RateLimiter
from app.access.models import ApiKey
from app.core.access import Principal, Role
from app.core.errors import AuthenticationError, InvalidInputError, NotFoundError


def test_a_key_is_shown_once_and_stored_as_its_hash(rolled_back_sessions):
    keys = KeyStore(rolled_back_sessions)
    new = keys.create("acme portal", "factory", ["F2", "F1", "F1"])
    assert new.token.startswith("slk_") and len(new.token) > 40
    assert (new.info.role, new.info.factory_ids, new.info.prefix) == (Role.FACTORY, ["F1", "F2"], new.token[:12])
    with rolled_back_sessions() as session:
        stored = session.scalars(select(ApiKey)).all()
    assert [row.token_hash for row in stored] == [hashlib.sha256(new.token.encode()).hexdigest()]
    assert all(new.token not in str(value) for row in stored for value in vars(row).values())
    principal = keys.authenticate(new.token)
    assert principal == Principal(Role.FACTORY, frozenset({"F1", "F2"}), new.info.id, "acme portal")
    assert keys.list()[0].last_used_at is not None


def test_unknown_and_revoked_keys_are_refused(rolled_back_sessions):
    keys = KeyStore(rolled_back_sessions)
    new = keys.create("ops", "admin")
    other = keys.create("seller tool", "search")
    with pytest.raises(AuthenticationError):
        keys.authenticate(new.token + "x")
    revoked = keys.revoke(new.info.id)
    assert revoked.revoked_at is not None and keys.revoke(new.info.id).revoked_at == revoked.revoked_at
    with pytest.raises(AuthenticationError, match="revoked"):
        keys.authenticate(new.token)
    assert keys.authenticate(other.token).role == Role.SEARCH  # revoking one key leaves the others
    with pytest.raises(NotFoundError):
        keys.revoke(10**9)


@pytest.mark.parametrize(
    ("name", "role", "factories", "message"),
    [
        ("x", "owner", [], "role must be one of"),
        ("x", "factory", [], "needs the ids"),
        ("x", "search", ["F1"], "only factory keys"),
        ("x", "admin", ["F1"], "only factory keys"),
        ("", "admin", [], "1-255"),
        ("x", "factory", ["bad id!"], "not factory ids"),
        ("x", "factory", [f"F{i}" for i in range(101)], "at most 100"),
    ],
)
def test_bad_keys_are_refused(rolled_back_sessions, name, role, factories, message):
    with pytest.raises(InvalidInputError, match=message):
        KeyStore(rolled_back_sessions).create(name, role, factories)


def test_what_each_principal_may_write_and_see():
    admin, factory = Principal.system(), Principal(Role.FACTORY, frozenset({"A", "B"}))
    assert admin.may_write("anything") and factory.may_write("A") and not factory.may_write("C")
    assert not Principal(Role.SEARCH).may_write("A") and not Principal(None).may_write("A")
    assert factory.sees_job(["A"]) and factory.sees_job(["A", "B"]) and not factory.sees_job(["A", "C"])
    assert not factory.sees_job([]) and admin.sees_job([]) and not Principal(Role.SEARCH).sees_job(["A"])


@pytest.mark.parametrize("storage", ["memory://", "redis://127.0.0.1:6379"])
def test_rate_limits_count_per_address_and_per_key(storage):
    if storage.startswith("redis"):
        pytest.importorskip("redis")
    limiter = RateLimiter(storage, per_key="3/minute", per_address="5/minute")
    limiter.storage.reset()
    assert [limiter.hit("10.0.0.1", "slk_a") for _ in range(3)] == [None, None, None]
    refusal = limiter.hit("10.0.0.1", "slk_a")
    assert refusal is not None and refusal.scope == "key" and 1 <= refusal.retry_after_s <= 60
    assert limiter.hit("10.0.0.1", "slk_b") is None  # the address has one request left
    refusal = limiter.hit("10.0.0.1", "slk_c")
    assert refusal is not None and refusal.scope == "address"
    assert limiter.hit("10.0.0.2", None) is None  # another address counts on its own


def test_processes_sharing_redis_share_the_counts():
    pytest.importorskip("redis")
    first = RateLimiter("redis://127.0.0.1:6379", per_key="100/minute", per_address="4/minute")
    second = RateLimiter("redis://127.0.0.1:6379", per_key="100/minute", per_address="4/minute")
    first.storage.reset()
    assert [first.hit("10.9.9.9", None), second.hit("10.9.9.9", None)] == [None, None]
    assert [first.hit("10.9.9.9", None), second.hit("10.9.9.9", None)] == [None, None]
    assert first.hit("10.9.9.9", None) is not None and second.hit("10.9.9.9", None) is not None
