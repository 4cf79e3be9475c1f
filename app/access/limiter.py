"""Rate limits per API key and per client address, with the `limits` library: counted in memory for one
process, or in Redis (`SOURCELENS_RATE_LIMIT_STORAGE=redis://host:6379`) when several API processes must share
the counts. A moving window: a burst at a window's edge cannot double the rate."""

import hashlib
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse, storage, strategies


@dataclass(frozen=True)
class Refusal:
    scope: str  # "key" or "address"
    limit: str  # e.g. "600 per 1 minute"
    retry_after_s: int


class RateLimiter:
    def __init__(self, storage_uri: str, per_key: str, per_address: str) -> None:
        self.storage = storage.storage_from_string(storage_uri)
        self.limiter = strategies.MovingWindowRateLimiter(self.storage)
        self.per_key: RateLimitItem = parse(per_key)
        self.per_address: RateLimitItem = parse(per_address)

    def hit(self, address: str, token: str | None) -> Refusal | None:
        """Count one request; a Refusal when the address or the key is over its limit."""
        if not self.limiter.hit(self.per_address, "address", address):
            return self._refusal("address", self.per_address, address)
        if token:
            key = hashlib.sha256(token.encode()).hexdigest()[:24]  # never the token itself in the store
            if not self.limiter.hit(self.per_key, "key", key):
                return self._refusal("key", self.per_key, key)
        return None

    def _refusal(self, scope: str, item: RateLimitItem, identity: str) -> Refusal:
        reset = self.limiter.get_window_stats(item, scope, identity).reset_time
        return Refusal(scope, str(item), max(1, math.ceil(reset - time.time())))
