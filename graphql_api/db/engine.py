"""Engines and transactions: read sessions for queries, write sessions for changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from graphql_api.db import sqlite_reads

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


class Database:
    """Owns the engines. ``reader()`` for queries, ``writer()`` for one atomic change."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 10) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            read_kw: dict[str, Any] = {}
            if self.url.get_driver_name() == "aiosqlite":
                module = sqlite_reads.read_dbapi()
                if module is not None:
                    read_kw["module"] = module
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
