"""Subscription root: live category events over WebSocket (graphql-transport-ws).

Each event is resolved in the subscriber's own context, with fresh loaders per event, so
field permissions apply as for queries (another user's email stays null) and a role
change applies from the next event.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry

from graphql_api.api.context import Info
from graphql_api.api.pagination import parse_id
from graphql_api.api.permissions import IsAuthenticated, guard
from graphql_api.api.types import CategoryType
from graphql_api.services.events import CategoryChange, ChangeKind


@strawberry.enum(name="CategoryEventKind", description="What happened to a category.")
class CategoryEventKindType(enum.Enum):
    CREATED = strawberry.enum_value("CREATED", description="It was created.")
    UPDATED = strawberry.enum_value("UPDATED", description="Its name or description changed.")
    DELETED = strawberry.enum_value(
        "DELETED", description="It was deleted (by its owner, an admin, or with its owner)."
    )


@strawberry.type(name="CategoryEvent", description="A change to one category.")
class CategoryEventType:
    kind: CategoryEventKindType = strawberry.field(description="What happened.")
    category_id: strawberry.ID = strawberry.field(description="The category's id.")
    category: CategoryType | None = strawberry.field(
        description="The category after the change, as the subscriber may see it (the "
        "owner's email only for the owner and admins); null when DELETED."
    )

    @classmethod
    def of(cls, change: CategoryChange) -> CategoryEventType:
        return cls(
            kind=CategoryEventKindType[change.kind.value],
            category_id=strawberry.ID(str(change.category_id)),
            category=CategoryType.of(change.record)
            if change.record is not None and change.kind is not ChangeKind.DELETED
            else None,
        )


@strawberry.type(
    description="Live data. Over WebSocket only (graphql-transport-ws on /graphql), "
    "authenticated by the connection_init payload {authorization: 'Bearer <access token>'}."
)
class Subscription:
    @strawberry.subscription(
        extensions=[guard(IsAuthenticated())],
        description="Every category change, or one owner's. Needs a signed-in caller; the "
        "socket closes (4403) when the access token expires or the session ends.",
    )
    async def category_events(
        self,
        info: Info,
        owner_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="Only this user's categories."),
        ] = strawberry.UNSET,
    ) -> AsyncGenerator[CategoryEventType, None]:
        ctx = info.context
        # Refused here, before the stream starts: the client gets an `error` message.
        ctx.services.events.check_available()
        owner = None
        if isinstance(owner_id, str):
            # An id that names no user can match no change: filter on an impossible owner.
            owner = parse_id(owner_id) or 0
        return _events(info, owner)


async def _events(info: Info, owner: int | None) -> AsyncGenerator[CategoryEventType, None]:
    ctx = info.context
    async with ctx.services.events.subscribe(
        owner_id=owner, on_overflow=ctx.on_overflow
    ) as changes:
        async for change in changes:
            ctx.next_event()
            yield CategoryEventType.of(change)
