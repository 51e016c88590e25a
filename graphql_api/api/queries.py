"""Query root: thin resolvers that translate arguments, call one service or loader, map types."""

from __future__ import annotations

import strawberry
from strawberry.extensions.field_extension import FieldExtension

from graphql_api.api.context import Info
from graphql_api.api.pagination import decode_cursor, page_size, parse_id
from graphql_api.api.permissions import IsAuthenticated, guard
from graphql_api.api.types import (
    CategoryConnection,
    CategoryType,
    SessionType,
    UserConnection,
    UserType,
    category_page,
)
from graphql_api.errors import Unauthenticated
from graphql_api.repositories import categories as categories_repo
from graphql_api.repositories import users as users_repo

AUTHENTICATED: list[FieldExtension] = [guard(IsAuthenticated())]


@strawberry.type
class Query:
    @strawberry.field(extensions=AUTHENTICATED)
    async def me(self, info: Info) -> UserType:
        viewer = await info.context.viewer()
        if viewer is None:
            raise Unauthenticated()
        return UserType.of(viewer)

    @strawberry.field(extensions=AUTHENTICATED)
    async def user(self, info: Info, id: strawberry.ID) -> UserType | None:
        user_id = parse_id(id)
        row = await info.context.loaders.user_by_id.load(user_id) if user_id else None
        return UserType.of(row) if row else None

    @strawberry.field(extensions=AUTHENTICATED)
    async def users(
        self, info: Info, first: int | None = 20, after: str | None = strawberry.UNSET
    ) -> UserConnection:
        limit, after_id = page_size(first), decode_cursor(after)
        async with info.context.container.db.reader() as session:
            rows = await users_repo.page(session=session, after_id=after_id, limit=limit + 1)
        return UserConnection.build(rows, limit)

    @strawberry.field(extensions=AUTHENTICATED)
    async def category(self, info: Info, id: strawberry.ID) -> CategoryType | None:
        category_id = parse_id(id)
        row = await info.context.loaders.category_by_id.load(category_id) if category_id else None
        return CategoryType.of(row) if row else None

    @strawberry.field(extensions=AUTHENTICATED)
    async def categories(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = strawberry.UNSET,
        owner_id: strawberry.ID | None = strawberry.UNSET,
    ) -> CategoryConnection:
        limit, after_id = page_size(first), decode_cursor(after)
        owner = None
        if isinstance(owner_id, str):
            owner = parse_id(owner_id)
            if owner is None:
                return CategoryConnection.build([], limit)
        async with info.context.container.db.reader() as session:
            rows = await categories_repo.page(
                session=session, after_id=after_id, limit=limit + 1, owner_id=owner
            )
        return await category_page(info, rows, limit)

    @strawberry.field(extensions=AUTHENTICATED)
    async def my_sessions(self, info: Info) -> list[SessionType]:
        ctx = info.context
        user_id = ctx.require_user()
        rows = await ctx.container.auth.sessions(user_id=user_id)
        return [
            SessionType(
                id=strawberry.ID(row.id),
                created_at=row.created_at,
                last_used_at=row.last_used_at,
                user_agent=row.user_agent,
                current=row.id == ctx.session_id,
            )
            for row in rows
        ]
