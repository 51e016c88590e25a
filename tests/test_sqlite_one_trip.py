"""SQLite in one trip per statement: both pools skip the rollback trip only when there is
nothing to roll back, and writes still commit, or roll back, whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from graphql_api.db.engine import Database
from graphql_api.db.models import Base, Category, User
from graphql_api.records import Role
from graphql_api.repositories import categories as categories_repo
from graphql_api.repositories import users as users_repo


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/reads.db", pool_size=1)
    async with database.write_engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    now = datetime.now(UTC)
    async with database.writer() as session:
        user = User(
            google_sub="s", email="a@example.com", name="A", role=Role.USER,
            created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(user)
        await session.flush()
        session.add_all(
            Category(
                name=f"C{n}", name_key=f"c{n}", owner_id=user.id, created_at=now, updated_at=now
            )
            for n in range(3)
        )
    yield database
    await database.dispose()


async def _driver(conn: AsyncConnection) -> Any:
    raw = await conn.get_raw_connection()
    return raw.driver_connection._connection  # type: ignore[union-attr]


async def test_reads_return_rows_and_leave_no_transaction_open(db: Database) -> None:
    async with db.reader() as session:
        users = await users_repo.records_by_ids(session=session, ids=[1])
        page = await categories_repo.page(session=session, after_id=1, limit=10)
    assert [u.email for u in users] == ["a@example.com"]
    assert [c.name for c in page] == ["C1", "C2"]
    assert all(c.created_at.tzinfo is UTC for c in page)
    async with db.read_engine.connect() as conn:  # pool_size=1: the same connection
        assert not (await _driver(conn)).in_transaction


async def test_a_transaction_left_open_on_the_read_pool_is_still_rolled_back(
    db: Database,
) -> None:
    async with db.read_engine.connect() as conn:
        await conn.execute(text("DELETE FROM categories"))
        assert (await _driver(conn)).in_transaction
    async with db.read_engine.connect() as conn:
        assert not (await _driver(conn)).in_transaction
        count = await conn.scalar(select(func.count()).select_from(Category))
    assert count == 3


async def test_a_failing_statement_raises_the_driver_error(db: Database) -> None:
    async with db.read_engine.connect() as conn:
        with pytest.raises(Exception, match="no such table"):
            await conn.execute(text("SELECT * FROM nowhere"))


async def test_the_installed_libraries_take_the_one_hop_path(db: Database) -> None:
    # The fast path depends on private parts of SQLAlchemy and aiosqlite; when an upgrade
    # removes them the service silently uses the stock adapter. Say so here.
    from graphql_api.db.sqlite_one_trip import OneHopCursor, one_hop_supported

    assert one_hop_supported()
    for engine in (db.read_engine, db.write_engine):
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert isinstance(raw.dbapi_connection.cursor(), OneHopCursor)  # type: ignore[union-attr]


async def test_a_write_commits_whole_or_not_at_all(db: Database) -> None:
    now = datetime.now(UTC)
    async with db.writer() as session:
        session.add(
            Category(name="New", name_key="new", owner_id=1, created_at=now, updated_at=now)
        )
    with pytest.raises(Exception, match="UNIQUE"):
        async with db.writer() as session:
            session.add(
                Category(name="Other", name_key="other", owner_id=1, created_at=now, updated_at=now)
            )
            await session.flush()
            session.add(
                Category(name="Dup", name_key="new", owner_id=1, created_at=now, updated_at=now)
            )
    async with db.reader() as session:
        names = {
            c.name for c in await categories_repo.page(session=session, after_id=None, limit=10)
        }
    assert names == {"C0", "C1", "C2", "New"}  # "Other" went with the failed transaction
    async with db.write_engine.connect() as conn:
        assert not (await _driver(conn)).in_transaction


def test_without_the_private_parts_the_stock_adapter_is_used_and_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from graphql_api.db import sqlite_one_trip

    monkeypatch.setattr(sqlite_one_trip, "one_hop_supported", lambda: False)
    monkeypatch.setattr(sqlite_one_trip, "_fallback_logged", False)
    with caplog.at_level("WARNING", logger="graphql_api.db"):
        assert sqlite_one_trip.one_trip_dbapi() is None
        assert sqlite_one_trip.one_trip_dbapi() is None
    said = [r for r in caplog.records if getattr(r, "event", None) == "sqlite_fast_reads_off"]
    assert len(said) == 1
