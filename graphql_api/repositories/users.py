"""Queries and writes on users. Never commits: the calling service owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from graphql_api.db.models import User

# Built once: building the statement costs about as much as running it.
_BY_IDS = select(User).where(User.id.in_(bindparam("ids", expanding=True)))


async def get_by_ids(*, session: AsyncSession, ids: Sequence[int]) -> list[User]:
    result = await session.scalars(_BY_IDS, {"ids": list(ids)})
    return list(result)


async def get_by_id(*, session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_by_sub(*, session: AsyncSession, google_sub: str) -> User | None:
    return await session.scalar(select(User).where(User.google_sub == google_sub))


async def get_by_email(*, session: AsyncSession, email: str) -> list[User]:
    result = await session.scalars(select(User).where(User.email == email).order_by(User.id))
    return list(result)


async def page(*, session: AsyncSession, after_id: int | None, limit: int) -> list[User]:
    query = select(User).order_by(User.id).limit(limit)
    if after_id is not None:
        query = query.where(User.id > after_id)
    return list(await session.scalars(query))


async def delete_by_id(*, session: AsyncSession, user_id: int) -> bool:
    result = await session.execute(delete(User).where(User.id == user_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]
