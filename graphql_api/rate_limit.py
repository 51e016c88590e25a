"""Fixed-window attempt counters: in-process by default, shared through Redis when configured.

A rate limiter must never be the reason users cannot sign in: ``FallbackRateLimiter``
asks Redis with a short deadline and, while Redis fails or stalls, counts in-process
instead (said once per outage, counted), going back to Redis as soon as it answers.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Protocol

from graphql_api.clock import Clock, SystemClock
from graphql_api.errors import RateLimited
from graphql_api.settings import RateLimit

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("graphql_api.rate_limit")


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


class FallbackRateLimiter:
    """``primary`` (Redis) within ``timeout`` seconds; ``fallback`` (in-process) otherwise.

    After a failure, Redis is not asked again for ``retry_after`` seconds, so an outage
    costs each request nothing but the in-process count; the first answer after that
    ends the outage. ``fallbacks`` counts the attempts counted in-process.
    """

    def __init__(
        self,
        primary: RateLimiter,
        fallback: RateLimiter,
        *,
        timeout: float = 0.2,
        retry_after: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.timeout = timeout
        self.retry_after = retry_after
        self.clock = clock or SystemClock()
        self.fallbacks = 0
        self._outage_started: float | None = None
        self._next_try = float("-inf")

    async def hit(self, key: str, rate: RateLimit) -> None:
        if self.clock.monotonic() >= self._next_try:
            try:
                async with asyncio.timeout(self.timeout):
                    await self.primary.hit(key, rate)
            except RateLimited:
                self._recovered()
                raise
            except Exception as exc:  # noqa: BLE001 - any Redis trouble: count here instead
                self._failed(exc)
            else:
                self._recovered()
                return
        self.fallbacks += 1
        await self.fallback.hit(key, rate)

    def _failed(self, exc: Exception) -> None:
        now = self.clock.monotonic()
        self._next_try = now + self.retry_after
        if self._outage_started is None:
            self._outage_started = now
            logger.warning(
                "rate limits are counted in this process: Redis did not answer in time",
                extra={"event": "rate_limit_fallback", "reason": exc.__class__.__name__},
            )

    def _recovered(self) -> None:
        if self._outage_started is not None:
            logger.warning(
                "rate limits are shared through Redis again",
                extra={
                    "event": "rate_limit_recovered",
                    "outage_seconds": round(self.clock.monotonic() - self._outage_started, 1),
                    "counted_here": self.fallbacks,
                },
            )
            self._outage_started = None
