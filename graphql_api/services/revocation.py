"""Which sessions have ended: an in-process set kept fresh from the revocation log.

Checking a token must not cost a database round trip per request. Each process keeps
the ids of recently ended sessions in memory and re-reads the log at most every
``poll_interval`` seconds (one small indexed query for the whole process, awaited by the
request that finds the set stale), so a logout in one process is refused by every other
process serving the same database within ``poll_interval`` (<= 1 s). Entries older than
an access token's lifetime are dropped: such tokens have expired anyway.

Long-lived connections (WebSockets) ``watch`` their session: while anything watches, the
log is polled in the background too, and a watcher hears of its session's end within
``poll_interval`` of the commit, on every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from graphql_api.clock import Clock
from graphql_api.db.engine import UNAVAILABLE, Database
from graphql_api.errors import ServiceUnavailable
from graphql_api.repositories import sessions as sessions_repo

logger = logging.getLogger("graphql_api.revocation")

# Re-read this much of the log before the last poll: a transaction that committed just
# after our previous read may carry an older revoked_at.
OVERLAP = timedelta(seconds=30)


class RevocationList:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        poll_interval: float,
        retention: float,
    ) -> None:
        self.db = db
        self.clock = clock
        self.poll_interval = poll_interval
        self.retention = retention
        self._revoked: dict[str, float] = {}
        self._polled_at = float("-inf")  # monotonic time of the last successful poll
        self._failed_at = float("-inf")  # ... and of the last poll the database failed
        self._failed_retry_after = 1
        self._since: datetime | None = None
        self._lock = asyncio.Lock()
        self.polls = 0
        self._watchers: dict[str, set[Callable[[], None]]] = {}
        self._watch_task: asyncio.Task[None] | None = None

    def watch(self, session_id: str, on_end: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_end`` once when ``session_id`` ends (at once if it has); returns the
        function that stops watching."""
        if session_id in self._revoked:
            on_end()
            return lambda: None
        self._watchers.setdefault(session_id, set()).add(on_end)
        if self._watch_task is None or self._watch_task.done():
            self._watch_task = asyncio.create_task(self._poll_while_watched())

        def unwatch() -> None:
            watchers = self._watchers.get(session_id)
            if watchers is not None:
                watchers.discard(on_end)
                if not watchers:
                    del self._watchers[session_id]

        return unwatch

    async def close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task

    async def _poll_while_watched(self) -> None:
        while self._watchers:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - the database may be away; poll again
                logger.warning(
                    "cannot read the revocation log for open connections",
                    extra={"event": "revocation_poll_failed", "reason": exc.__class__.__name__},
                )

    def _ended(self, session_ids: list[str]) -> None:
        for sid in session_ids:
            for on_end in self._watchers.pop(sid, ()):
                on_end()

    async def is_revoked(self, session_id: str) -> bool:
        if self.clock.monotonic() - self._polled_at >= self.poll_interval:
            await self.refresh()
        return session_id in self._revoked

    def add(self, session_ids: list[str]) -> None:
        """Sessions ended by this process: refused here at once, before any poll."""
        now = self.clock.timestamp()
        for sid in session_ids:
            self._revoked[sid] = now
        self._ended(session_ids)

    async def refresh(self, *, force: bool = False) -> None:
        asked = self.clock.monotonic()
        async with self._lock:
            # Whoever waited on the lock finds the set refreshed by the holder.
            if not force and self.clock.monotonic() - self._polled_at < self.poll_interval:
                return
            # ... or shares the holder's failure: while the database stalls, each waiter in
            # turn would otherwise wait out its own deadline, one after another.
            if self._failed_at >= asked:
                raise ServiceUnavailable(UNAVAILABLE, retry_after=self._failed_retry_after)
            started = self.clock.monotonic()
            now = self.clock.now()
            since = (
                now - timedelta(seconds=self.retention)
                if self._since is None
                else self._since - OVERLAP
            )
            try:
                async with self.db.reader() as session:
                    rows = await sessions_repo.revocations_since(session=session, since=since)
            except ServiceUnavailable as unavailable:
                self._failed_at = self.clock.monotonic()
                self._failed_retry_after = unavailable.retry_after
                raise
            for sid, revoked_at in rows:
                self._revoked[sid] = revoked_at.timestamp()
            if self._watchers:
                self._ended([sid for sid, _ in rows if sid in self._watchers])
            self._since = now
            self._polled_at = started
            self.polls += 1
            horizon = self.clock.timestamp() - self.retention
            if len(self._revoked) > 1024 or self.polls % 128 == 0:
                self._revoked = {s: at for s, at in self._revoked.items() if at >= horizon}
