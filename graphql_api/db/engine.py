"""Engines and transactions: read sessions for queries, write sessions for changes."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(immediate: bool) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()
        if immediate:
            # Take SQLite's write lock when the transaction begins, not at its first write:
            # a deferred transaction that read first fails with SQLITE_BUSY instead of
            # waiting when another writer got there in between.
            dbapi_connection.isolation_level = None

    return on_connect


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class _OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A read-pool cursor whose statement costs one trip to aiosqlite's thread.

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


class _ReadConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _OneHopCursor

    def rollback(self) -> None:
        # The pool and the session roll back on every check-in. sqlite3's rollback does
        # nothing when no transaction is open, which is the normal state of a read
        # connection (sqlite3 opens transactions before DML only, never before a SELECT),
        # so skip the trip to the other thread then. Anything open is still rolled back.
        driver = self._connection._connection
        if driver is not None and not driver.in_transaction:
            return
        super().rollback()


class _ReadDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """aiosqlite as SQLAlchemy adapts it, with the read pool's cheaper connection."""

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        return _ReadConnection(self, adapted._connection)


def _one_hop_supported() -> bool:
    """The one-hop cursor leans on private parts of SQLAlchemy's aiosqlite adapter and of
    aiosqlite (checked by tests/test_sqlite_reads.py); without them, use the stock adapter."""
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


def _read_dbapi() -> _ReadDBAPI:
    import sqlite3

    import aiosqlite

    return _ReadDBAPI(aiosqlite, sqlite3)


class Database:
    """Owns the engines. ``reader()`` for queries, ``writer()`` for one atomic change."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 10) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            read_kw: dict[str, Any] = {}
            if self.url.get_driver_name() == "aiosqlite" and _one_hop_supported():
                read_kw["module"] = _read_dbapi()
            self.read_engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=0, **read_kw
            )
            # One writer connection per process: SQLite has one writer at a time anyway.
            self.write_engine = create_async_engine(url, pool_size=1, max_overflow=0)
            event.listen(self.read_engine.sync_engine, "connect", _sqlite_pragmas(False))
            event.listen(self.write_engine.sync_engine, "connect", _sqlite_pragmas(True))
            event.listen(self.write_engine.sync_engine, "begin", _begin_immediate)
        else:
            self.read_engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True
            )
            self.write_engine = self.read_engine
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._writer = async_sessionmaker(self.write_engine, expire_on_commit=False)

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        async with self._reader() as session:
            yield session

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self._writer() as session, session.begin():
            yield session

    async def ping(self) -> None:
        async with self.read_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()

    @property
    def engines(self) -> tuple[AsyncEngine, ...]:
        if self.write_engine is self.read_engine:
            return (self.read_engine,)
        return (self.read_engine, self.write_engine)
