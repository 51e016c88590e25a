"""Queries and writes on users. Never commits: the calling service owns the transaction.

Reads for display return ``UserRecord``s straight from the columns; writes work on ORM
rows (``get_by_id``, ``get_by_sub``, ``get_by_email``) inside the service's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from graphql_api.db.engine import Executor
from graphql_api.db.models import User
from graphql_api.records import UserRecord

_table = User.__table__
# Table columns, not ORM entities: no identity map or change tracking for display reads.
_RECORD = select(
    _table.c.id,
    _table.c.name,
    _table.c.email,
    _table.c.picture_url,
    _table.c.role,
    _table.c.created_at,
)
# Built once: building the statement costs about as much as running it.
_BY_IDS = _RECORD.where(_table.c.id.in_(bindparam("ids", expanding=True)))
# One id (``me``, a single owner): no expanding IN, whose SQL is rendered on every call.
_BY_ID = _RECORD.where(_table.c.id == bindparam("id"))
_PAGES = {
    after: (_RECORD.where(_table.c.id > bindparam("after_id")) if after else _RECORD)
    .order_by(_table.c.id)
    .limit(bindparam("limit"))
    for after in (False, True)
}


def record(row: User) -> UserRecord:
    """The record of a row a service has just written."""
    return UserRecord(row.id, row.name, row.email, row.picture_url, row.role, row.created_at)


async def records_by_ids(*, session: Executor, ids: Sequence[int]) -> list[UserRecord]:
    if len(ids) == 1:
        rows = await session.execute(_BY_ID, {"id": ids[0]})
    else:
        rows = await session.execute(_BY_IDS, {"ids": list(ids)})
    return [UserRecord._make(row) for row in rows]


async def page(*, session: Executor, after_id: int | None, limit: int) -> list[UserRecord]:
    params: dict[str, int] = {"limit": limit}
    if after_id is not None:
        params["after_id"] = after_id
    rows = await session.execute(_PAGES[after_id is not None], params)
    return [UserRecord._make(row) for row in rows]


async def get_by_id(*, session: AsyncSession, user_id: int, lock: bool = False) -> User | None:
    """``lock`` takes the row lock (PostgreSQL) for a change that depends on the row."""
    if not lock:
        return await session.get(User, user_id)
    return await session.scalar(select(User).where(User.id == user_id).with_for_update())


async def get_by_sub(*, session: AsyncSession, google_sub: str) -> User | None:
    return await session.scalar(select(User).where(User.google_sub == google_sub))


async def get_by_email(*, session: AsyncSession, email: str) -> list[User]:
    result = await session.scalars(select(User).where(User.email == email).order_by(User.id))
    return list(result)


async def delete_by_id(*, session: AsyncSession, user_id: int) -> bool:
    result = await session.execute(delete(User).where(User.id == user_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]
