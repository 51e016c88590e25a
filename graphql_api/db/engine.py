"""Engines and transactions: read sessions for queries, write sessions for changes.

A database that is down or stalls costs a bounded wait, never a hang: connecting,
checking a connection out of the pool and each statement have deadlines (``Timeouts``),
and a failure to reach the database leaves ``reader()``/``writer()`` as
``ServiceUnavailable`` (SERVICE_UNAVAILABLE, retry later), said once per outage in the
log (then how many requests it cost, when the database answers again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from graphql_api.db import sqlite_one_trip
from graphql_api.errors import ServiceUnavailable

logger = logging.getLogger("graphql_api.db")

# What a read runs on: a plain connection (``reader()``), or a write transaction's session.
Executor = AsyncConnection | AsyncSession
UNAVAILABLE = "The database is unavailable; retry later."


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: opening a connection, waiting for a pooled one, running one statement."""

    connect: float = 3.0
    checkout: float = 3.0
    statement: float = 5.0


def _sqlite_pragmas(immediate: bool, busy_timeout: float) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Waiting for another writer's lock is SQLite's only way to stall.
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()
        if immediate:
            # Take SQLite's write lock when the transaction begins, not at its first write:
            # a deferred transaction that read first fails with SQLITE_BUSY instead of
            # waiting when another writer got there in between.
            dbapi_connection.isolation_level = None

    return on_connect


def _begin_immediate(conn: Any) -> None:
    # A single statement (``Database.statement()``) is atomic without a transaction around
    # it: the driver runs it in autocommit, one trip instead of three.
    if not conn.get_execution_options().get(SINGLE_STATEMENT, False):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


SINGLE_STATEMENT = "graphql_api_single_statement"


def _unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be reached or answered too slowly (as
    opposed to a refused statement, such as a broken unique constraint, or a bug)."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, exc.OperationalError) and "no such table" in str(error.orig):
        return False  # SQLite's word for an unmigrated schema, not for an outage
    return isinstance(
        error,
        exc.OperationalError | exc.InterfaceError | exc.TimeoutError | TimeoutError | OSError,
    )


class Database:
    """Owns the engines. ``reader()`` for queries (a plain connection: reads are of table
    columns into records, without the ORM), ``writer()`` for one atomic change."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.timeouts = timeouts = timeouts or Timeouts()
        if self.is_sqlite:
            module_kw: dict[str, Any] = {}
            if self.url.get_driver_name() == "aiosqlite":
                module = sqlite_one_trip.one_trip_dbapi()
                if module is not None:
                    module_kw["module"] = module
            self.read_engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=0,
                pool_timeout=timeouts.checkout,
                **module_kw,
            )
            # One writer connection per process: SQLite has one writer at a time anyway.
            self.write_engine = create_async_engine(
                url, pool_size=1, max_overflow=0, pool_timeout=timeouts.checkout, **module_kw
            )
            busy = timeouts.statement
            event.listen(self.read_engine.sync_engine, "connect", _sqlite_pragmas(False, busy))
            event.listen(self.write_engine.sync_engine, "connect", _sqlite_pragmas(True, busy))
            event.listen(self.write_engine.sync_engine, "begin", _begin_immediate)
        else:
            self.read_engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_pre_ping=True,
                pool_timeout=timeouts.checkout,
                # asyncpg: the deadline to connect, and to each statement (client-side,
                # so that a stopped server costs a bounded wait too).
                connect_args={"timeout": timeouts.connect, "command_timeout": timeouts.statement},
            )
            self.write_engine = self.read_engine
        self._writer = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._failing_since: float | None = None
        self._failures = 0
        self._abandoned: set[asyncio.Future[Any]] = set()

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncConnection]:
        async with self._answering(), self.read_engine.connect() as connection:
            if not self.is_sqlite:
                # A read needs no transaction: no BEGIN and ROLLBACK round trips around it
                # (SQLite's driver opens none for a SELECT anyway).
                connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[AsyncConnection]:
        """A write connection for ONE statement, which commits by itself (a single
        statement is atomic): no BEGIN and COMMIT round trips around it. For more than one
        statement, or a read before the write, use ``writer()``."""
        async with self._answering(), self.write_engine.connect() as connection:
            if self.is_sqlite:
                connection = await connection.execution_options(**{SINGLE_STATEMENT: True})
            else:
                connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection
            await connection.commit()  # no trip: nothing is open

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self._answering(), self._writer() as session, session.begin():
            yield session

    @asynccontextmanager
    async def _answering(self) -> AsyncIterator[None]:
        """A database that cannot be reached (or not in time) becomes ServiceUnavailable;
        an answer after an outage ends it."""
        try:
            yield
        except Exception as error:
            if _unreachable(error):
                raise self._unavailable(error) from error
            raise
        if self._failing_since is not None:
            self._recovered()

    def _unavailable(self, error: BaseException) -> ServiceUnavailable:
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            logger.warning(
                "database unavailable: requests that need it answer SERVICE_UNAVAILABLE",
                extra={"event": "database_unavailable", "reason": _reason(error)},
            )
        return ServiceUnavailable(UNAVAILABLE, retry_after=2)

    def _recovered(self) -> None:
        assert self._failing_since is not None  # noqa: S101 - checked by the callers
        logger.warning(
            "database answers again",
            extra={
                "event": "database_recovered",
                "outage_seconds": round(time.monotonic() - self._failing_since, 1),
                "failed_requests": self._failures,
            },
        )
        self._failing_since = None
        self._failures = 0

    async def scalar(self, statement: str, *, within: float | None = None) -> Any:
        """One value of a read-only ``statement``; ``ServiceUnavailable`` when the database
        cannot answer, or not within ``within`` seconds."""

        async def run() -> Any:
            async with self.reader() as session:
                return (await session.execute(text(statement))).scalar()

        task = asyncio.ensure_future(run())
        try:
            # Shielded: once cancelled, giving the stalled connection back (its rollback)
            # would wait out the statement deadline too, past ``within``. Left to its own
            # deadlines instead, and forgotten.
            return await asyncio.wait_for(asyncio.shield(task), within)
        except TimeoutError as error:
            self._abandoned.add(task)
            task.add_done_callback(self._forget)
            raise self._unavailable(error) from error

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its failure was answered already

    async def dispose(self) -> None:
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()

    @property
    def failing(self) -> bool:
        return self._failing_since is not None

    @property
    def engines(self) -> tuple[AsyncEngine, ...]:
        if self.write_engine is self.read_engine:
            return (self.read_engine,)
        return (self.read_engine, self.write_engine)


def _reason(error: BaseException) -> str:
    """The class of what went wrong (the driver's own error, where SQLAlchemy wraps one)."""
    original = getattr(error, "orig", None)
    return (original or error).__class__.__name__
