"""Housekeeping: the tables that would otherwise only grow, pruned on a schedule and on demand.

- revocations older than an access token's lifetime (their tokens have expired anyway;
  the revocation poll never reads that far back);
- Google ID tokens past their own expiry (they cannot be replayed any more);
- sessions that ended (logged out, revoked, expired) more than ``ENDED_SESSION_RETENTION``
  ago, with their refresh tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import timedelta

from graphql_api.clock import Clock
from graphql_api.db.engine import Database
from graphql_api.errors import ServiceUnavailable
from graphql_api.repositories import sessions as sessions_repo

logger = logging.getLogger("graphql_api.maintenance")

ENDED_SESSION_RETENTION = timedelta(days=7)


class Pruner:
    def __init__(self, *, db: Database, clock: Clock, revocation_retention: float) -> None:
        self.db = db
        self.clock = clock
        self.revocation_retention = timedelta(seconds=revocation_retention)

    async def prune(self) -> dict[str, int]:
        """Delete what has expired; how many rows of each kind went."""
        now = self.clock.now()
        async with self.db.writer() as session:
            pruned = await sessions_repo.prune(
                session=session,
                revoked_before=now - self.revocation_retention,
                ended_before=now - ENDED_SESSION_RETENTION,
                now=now,
            )
        logger.info("pruned expired rows", extra={"event": "pruned", **pruned})
        return pruned

    async def run(self, *, every: float) -> None:
        """Prune every ``every`` seconds, from a random point in the first interval, so
        that processes started together do not prune together."""
        await asyncio.sleep(random.uniform(0.1, 1.0) * every)  # noqa: S311 - not security
        while True:
            # A database outage is said by the database; the next round will prune.
            with contextlib.suppress(ServiceUnavailable):
                await self.prune()
            await asyncio.sleep(every)
