"""Fixed-window attempt counters: in-process by default, shared through Redis when configured."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

from graphql_api.clock import Clock, SystemClock
from graphql_api.errors import RateLimited
from graphql_api.settings import RateLimit

if TYPE_CHECKING:
    from redis.asyncio import Redis


class RateLimiter(Protocol):
    async def hit(self, key: str, rate: RateLimit) -> None:
        """Count one attempt for ``key``; raise ``RateLimited`` past the limit."""
        ...


class MemoryRateLimiter:
    """Per-process counters; right for one process, and the fallback without Redis."""

    def __init__(self, max_keys: int = 100_000, *, clock: Clock | None = None) -> None:
        self._windows: dict[str, tuple[int, int]] = {}
        self.max_keys = max_keys
        self.clock = clock or SystemClock()

    async def hit(self, key: str, rate: RateLimit) -> None:
        now = self.clock.timestamp()
        window = int(now // rate.period)
        start, count = self._windows.get(key, (window, 0))
        if start != window:
            start, count = window, 0
        count += 1
        if len(self._windows) >= self.max_keys:
            # Bounded memory under a flood of distinct keys: forget finished windows.
            self._windows = {k: v for k, v in self._windows.items() if v[0] == window}
        self._windows[key] = (start, count)
        if count > rate.limit:
            raise RateLimited(max(1, math.ceil((window + 1) * rate.period - now)))


class RedisRateLimiter:
    """Counters in Redis, so that every process behind the same Redis counts together."""

    def __init__(
        self, redis: Redis, prefix: str = "graphql_api:rl:", *, clock: Clock | None = None
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.clock = clock or SystemClock()

    async def hit(self, key: str, rate: RateLimit) -> None:
        now = self.clock.timestamp()
        window = int(now // rate.period)
        redis_key = f"{self.prefix}{key}:{rate.period}:{window}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.incr(redis_key)
        pipe.expire(redis_key, rate.period + 1)
        count, _ = await pipe.execute()
        if int(count) > rate.limit:
            raise RateLimited(max(1, math.ceil((window + 1) * rate.period - now)))
