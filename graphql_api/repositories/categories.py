"""Queries and writes on categories. Never commits: the calling service owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from graphql_api.db.models import Category


async def get_by_ids(*, session: AsyncSession, ids: Sequence[int]) -> list[Category]:
    return list(await session.scalars(select(Category).where(Category.id.in_(ids))))


async def get_by_id(*, session: AsyncSession, category_id: int) -> Category | None:
    return await session.get(Category, category_id)


async def name_taken(*, session: AsyncSession, name_key: str, except_id: int | None = None) -> bool:
    query = select(Category.id).where(Category.name_key == name_key)
    if except_id is not None:
        query = query.where(Category.id != except_id)
    return (await session.scalar(query.limit(1))) is not None


async def page(
    *, session: AsyncSession, after_id: int | None, limit: int, owner_id: int | None = None
) -> list[Category]:
    query = select(Category).order_by(Category.id).limit(limit)
    if after_id is not None:
        query = query.where(Category.id > after_id)
    if owner_id is not None:
        query = query.where(Category.owner_id == owner_id)
    return list(await session.scalars(query))


async def pages_by_owner(
    *, session: AsyncSession, owner_ids: Sequence[int], after_id: int | None, limit: int
) -> dict[int, list[Category]]:
    """The first ``limit`` categories after ``after_id`` of each owner, in one statement."""
    row_number = (
        func.row_number()
        .over(partition_by=Category.owner_id, order_by=Category.id)
        .label("row_number")
    )
    inner = select(Category.id, row_number).where(Category.owner_id.in_(owner_ids))
    if after_id is not None:
        inner = inner.where(Category.id > after_id)
    ranked = inner.subquery()
    query = (
        select(Category)
        .join(ranked, ranked.c.id == Category.id)
        .where(ranked.c.row_number <= limit)
        .order_by(Category.owner_id, Category.id)
    )
    pages: dict[int, list[Category]] = {owner_id: [] for owner_id in owner_ids}
    for category in await session.scalars(query):
        pages[category.owner_id].append(category)
    return pages


async def delete_by_id(*, session: AsyncSession, category_id: int) -> bool:
    result = await session.execute(delete(Category).where(Category.id == category_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]
