"""Readiness: can this process do its work right now? Answered within a deadline.

Ready means the database answers and its schema is at the latest migration, Redis
answers when the deployment uses it, and the process is not shutting down (a load
balancer then stops sending before the drain, not after).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from graphql_api.db.engine import Database
from graphql_api.errors import ServiceUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis


class Readiness:
    def __init__(self, *, db: Database, head: str, redis: Redis | None = None) -> None:
        self.db = db
        self.head = head
        self.redis = redis
        self.draining = False

    async def problems(self, *, within: float = 0.9) -> list[str]:
        """What keeps this process from being ready (empty when ready)."""
        if self.draining:
            return ["shutting down"]
        checks = [self._database(within)]
        if self.redis is not None:
            checks.append(self._redis(self.redis, within))
        found = await asyncio.gather(*checks)
        return [problem for problem in found if problem is not None]

    async def _database(self, within: float) -> str | None:
        try:
            revision = await self.db.scalar(
                "SELECT version_num FROM alembic_version", within=within
            )
        except ServiceUnavailable:
            return "database: does not answer"
        except Exception:  # noqa: BLE001 - e.g. no alembic_version table: never migrated
            return "database: not migrated (run graphql-api migrate)"
        if revision != self.head:
            return f"database: at migration {revision}, not {self.head} (run graphql-api migrate)"
        return None

    @staticmethod
    async def _redis(redis: Redis, within: float) -> str | None:
        try:
            async with asyncio.timeout(within):
                await redis.ping()
        except Exception:  # noqa: BLE001 - any failure means "not answering"
            return "redis: does not answer"
        return None
