"""Queries and writes on categories. Never commits: the calling service owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from graphql_api.db.engine import Executor
from graphql_api.db.models import Category
from graphql_api.records import CategoryRecord

_table = Category.__table__
# Table columns, not ORM attributes: the statement then skips the ORM's compile step.
_RECORD = select(
    _table.c.id,
    _table.c.name,
    _table.c.description,
    _table.c.owner_id,
    _table.c.created_at,
    _table.c.updated_at,
)


# The read statements are built once: building one costs more than running it.
_BY_IDS = _RECORD.where(_table.c.id.in_(bindparam("ids", expanding=True)))


def _page_statement(*, after: bool, owner: bool) -> Select[Any]:
    query = _RECORD.order_by(_table.c.id).limit(bindparam("limit"))
    if after:
        query = query.where(_table.c.id > bindparam("after_id"))
    if owner:
        query = query.where(_table.c.owner_id == bindparam("owner_id"))
    return query


_PAGES = {
    (after, owner): _page_statement(after=after, owner=owner)
    for after in (False, True)
    for owner in (False, True)
}


async def get_by_ids(*, session: Executor, ids: Sequence[int]) -> list[CategoryRecord]:
    rows = await session.execute(_BY_IDS, {"ids": list(ids)})
    return [CategoryRecord._make(row) for row in rows]


def record(row: Category) -> CategoryRecord:
    """The record of a row a service has just written."""
    return CategoryRecord(
        row.id, row.name, row.description, row.owner_id, row.created_at, row.updated_at
    )


async def get_by_id(
    *, session: AsyncSession, category_id: int, lock: bool = False
) -> Category | None:
    """``lock`` takes the row lock (PostgreSQL), so that the check of who may change the
    category and the change itself see the same owner."""
    if not lock:
        return await session.get(Category, category_id)
    return await session.scalar(
        select(Category).where(Category.id == category_id).with_for_update()
    )


_INSERT = insert(Category).returning(Category.id)


async def insert_row(
    *,
    session: Executor,
    name: str,
    name_key: str,
    description: str | None,
    owner_id: int,
    now: datetime,
) -> int:
    """A new category in one statement; its id. ``IntegrityError`` when the name is taken."""
    result = await session.execute(
        _INSERT,
        {
            "name": name,
            "name_key": name_key,
            "description": description,
            "owner_id": owner_id,
            "created_at": now,
            "updated_at": now,
        },
    )
    category_id: int = result.scalar_one()
    return category_id


async def page(
    *, session: Executor, after_id: int | None, limit: int, owner_id: int | None = None
) -> list[CategoryRecord]:
    params: dict[str, int] = {"limit": limit}
    if after_id is not None:
        params["after_id"] = after_id
    if owner_id is not None:
        params["owner_id"] = owner_id
    rows = await session.execute(_PAGES[(after_id is not None, owner_id is not None)], params)
    return [CategoryRecord._make(row) for row in rows]


async def pages_by_owner(
    *, session: Executor, owner_ids: Sequence[int], after_id: int | None, limit: int
) -> dict[int, list[CategoryRecord]]:
    """The first ``limit`` categories after ``after_id`` of each owner, in one statement."""
    row_number = (
        func.row_number()
        .over(partition_by=_table.c.owner_id, order_by=_table.c.id)
        .label("row_number")
    )
    inner = select(_table.c.id, row_number).where(_table.c.owner_id.in_(owner_ids))
    if after_id is not None:
        inner = inner.where(_table.c.id > after_id)
    ranked = inner.subquery()
    query = (
        _RECORD.join(ranked, ranked.c.id == _table.c.id)
        .where(ranked.c.row_number <= limit)
        .order_by(_table.c.owner_id, _table.c.id)
    )
    pages: dict[int, list[CategoryRecord]] = {owner_id: [] for owner_id in owner_ids}
    for row in await session.execute(query):
        category = CategoryRecord._make(row)
        pages[category.owner_id].append(category)
    return pages


async def ids_of_owner(*, session: Executor, owner_id: int) -> list[int]:
    return list(await session.scalars(select(_table.c.id).where(_table.c.owner_id == owner_id)))


async def delete_by_id(*, session: AsyncSession, category_id: int) -> bool:
    result = await session.execute(delete(Category).where(Category.id == category_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]
