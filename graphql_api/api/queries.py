"""Query root: thin resolvers that translate arguments, call one service (or loader), map types."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.extensions.field_extension import FieldExtension

from graphql_api.api.context import Info
from graphql_api.api.pagination import decode_cursor, page_size, parse_id
from graphql_api.api.permissions import IsAuthenticated, guard
from graphql_api.api.types import (
    After,
    CategoryConnection,
    CategoryType,
    First,
    SessionType,
    UserConnection,
    UserType,
    selects,
)

AUTHENTICATED: list[FieldExtension] = [guard(IsAuthenticated())]
SIGNED_IN = "Needs a signed-in caller (UNAUTHENTICATED otherwise)."


@strawberry.type(description="Reads. Every field needs a signed-in caller.")
class Query:
    @strawberry.field(extensions=AUTHENTICATED, description=f"The caller. {SIGNED_IN}")
    async def me(self, info: Info) -> UserType:
        viewer = await info.context.viewer()
        if viewer is None:  # the account was deleted since the token was issued
            raise info.context.unauthenticated()
        return UserType.of(viewer)

    @strawberry.field(
        extensions=AUTHENTICATED, description=f"A user by id; null if there is none. {SIGNED_IN}"
    )
    async def user(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="The id.")]
    ) -> UserType | None:
        user_id = parse_id(id)
        record = await info.context.loaders.user_by_id.load(user_id) if user_id else None
        return UserType.of(record) if record else None

    @strawberry.field(extensions=AUTHENTICATED, description=f"Every user, by id. {SIGNED_IN}")
    async def users(
        self, info: Info, first: First = 20, after: After = strawberry.UNSET
    ) -> UserConnection:
        limit, after_id = page_size(first), decode_cursor(after)
        rows = await info.context.services.users.page(after_id=after_id, limit=limit + 1)
        return UserConnection.build(rows, limit)

    @strawberry.field(
        extensions=AUTHENTICATED,
        description=f"A category by id; null if there is none. {SIGNED_IN}",
    )
    async def category(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="The id.")]
    ) -> CategoryType | None:
        category_id = parse_id(id)
        record = (
            await info.context.loaders.category_by_id.load(category_id) if category_id else None
        )
        return CategoryType.of(record) if record else None

    @strawberry.field(
        extensions=AUTHENTICATED,
        description=f"Every category, or one owner's, by id. {SIGNED_IN}",
    )
    async def categories(
        self,
        info: Info,
        first: First = 20,
        after: After = strawberry.UNSET,
        owner_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Only this user's categories."),
        ] = strawberry.UNSET,
    ) -> CategoryConnection:
        limit, after_id = page_size(first), decode_cursor(after)
        owner = None
        if isinstance(owner_id, str):
            owner = parse_id(owner_id)
            if owner is None:
                return CategoryConnection.build([], limit)
        page = await info.context.services.categories.page(
            after_id=after_id,
            limit=limit,
            owner_id=owner,
            with_owners=selects(info, "edges", "node", "owner"),
        )
        owners = {pk: UserType.of(record) for pk, record in page.owners.items()}
        return CategoryConnection.build(page.rows, limit, owners)

    @strawberry.field(
        extensions=AUTHENTICATED,
        description=f"The caller's live sessions (sign-ins), newest first. {SIGNED_IN}",
    )
    async def my_sessions(self, info: Info) -> list[SessionType]:
        ctx = info.context
        records = await ctx.services.auth.sessions(user_id=ctx.require_user())
        return [SessionType.of(record, current_id=ctx.session_id) for record in records]
