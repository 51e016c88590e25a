"""SQLite statements in one trip to aiosqlite's thread: a DBAPI adapter for SQLAlchemy.

SQLAlchemy's aiosqlite adapter makes four trips to aiosqlite's thread per statement and a
rollback trip per check-in; on one core each trip costs more than the SQLite work itself.
This module subclasses private parts of SQLAlchemy's adapter and uses aiosqlite's private
``_execute``, so it is feature-detected (``one_hop_supported``): when the installed
versions change, both pools (reads and the one write connection) fall back to the stock
adapter and say so once.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)

logger = logging.getLogger("graphql_api.db")


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose statement costs one trip to aiosqlite's thread.

    SQLAlchemy's aiosqlite cursor makes four trips per statement (open the cursor,
    execute, fetch all, close), and on one core each trip costs more than the SQLite
    work itself. This one opens, executes, fetches and closes the sqlite3 cursor inside a
    single call on the connection's own thread, so nothing is shared across threads.
    """

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        driver = self._connection._conn  # the sqlite3 connection, used on its own thread only

        def run() -> tuple[Any, list[Any], int, int | None]:
            cursor = driver.cursor()
            try:
                cursor.execute(operation, () if parameters is None else parameters)
                description = cursor.description
                rows = cursor.fetchall() if description else []
                return description, rows, cursor.rowcount, cursor.lastrowid
            finally:
                cursor.close()

        async with self._adapt_connection._execute_mutex:
            result = await self._connection._execute(run)
        self._description, rows, self._rowcount, self._lastrowid = result
        self._rows = deque(rows)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        driver = self._connection._conn

        def run() -> tuple[int, int | None]:
            cursor = driver.cursor()
            try:
                cursor.executemany(operation, seq_of_parameters)
                return cursor.rowcount, cursor.lastrowid
            finally:
                cursor.close()

        async with self._adapt_connection._execute_mutex:
            self._rowcount, self._lastrowid = await self._connection._execute(run)

    async def _async_soft_close(self) -> None:
        return  # nothing is open on the other thread

    def close(self) -> None:
        self._rows.clear()


class _OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor

    def rollback(self) -> None:
        # The pool and the session roll back on every check-in. sqlite3's rollback does
        # nothing when no transaction is open, which is the normal state of a connection
        # back in the pool (sqlite3 opens transactions before DML only, never before a
        # SELECT, and a write's transaction has been committed), so skip the trip to the
        # other thread then. Anything open is still rolled back.
        driver = self._connection._connection
        if driver is not None and not driver.in_transaction:
            return
        super().rollback()

    def commit(self) -> None:
        # Likewise after a single statement run in autocommit (``Database.statement()``):
        # nothing is open, nothing to commit, no trip.
        driver = self._connection._connection
        if driver is not None and not driver.in_transaction:
            return
        super().commit()


class _OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """aiosqlite as SQLAlchemy adapts it, with the cheaper connection."""

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        return _OneTripConnection(self, adapted._connection)


def one_hop_supported() -> bool:
    """The one-hop cursor leans on private parts of SQLAlchemy's aiosqlite adapter and of
    aiosqlite (checked by tests/test_sqlite_one_trip.py); without them, use the stock adapter."""
    import aiosqlite

    return (
        callable(getattr(aiosqlite.Connection, "_execute", None))
        and getattr(AsyncAdapt_aiosqlite_connection, "_cursor_cls", None)
        is AsyncAdapt_aiosqlite_cursor
        and any(
            "_execute_mutex" in getattr(cls, "__slots__", ())
            for cls in AsyncAdapt_aiosqlite_connection.__mro__
        )
    )


_fallback_logged = False


def one_trip_dbapi() -> _OneTripDBAPI | None:
    """The DBAPI module for the engines, or None (the stock adapter) when the installed
    SQLAlchemy or aiosqlite no longer has what it leans on: said once per process."""
    global _fallback_logged
    if not one_hop_supported():
        if not _fallback_logged:
            _fallback_logged = True
            logger.warning(
                "SQLite uses the stock aiosqlite adapter: the installed SQLAlchemy or "
                "aiosqlite changed the private parts the one-trip adapter uses",
                extra={"event": "sqlite_fast_reads_off"},
            )
        return None
    import sqlite3

    import aiosqlite

    return _OneTripDBAPI(aiosqlite, sqlite3)
