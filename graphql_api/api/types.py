"""The GraphQL object types, built from rows with plain attributes (no per-field resolvers)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, cast

import strawberry
from graphql import FieldNode

from graphql_api.api.context import Info
from graphql_api.api.pagination import decode_cursor, encode_cursor, page_size
from graphql_api.api.permissions import IsSelfOrAdmin, guard
from graphql_api.db import models
from graphql_api.errors import NotFound

Role = models.Role
strawberry.enum(Role, name="Role")


class CategoryRow(Protocol):
    """What a Category is built from: a read record or an ORM row fresh from a write."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def owner_id(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(name="User")
class UserType:
    id: strawberry.ID
    name: str
    picture_url: str | None
    role: Role
    created_at: datetime
    pk: strawberry.Private[int]
    email_address: strawberry.Private[str]

    @strawberry.field(
        description="Only the user themself and admins see it; everyone else gets null (no error).",
        extensions=[guard(IsSelfOrAdmin(), silent=True)],
    )
    def email(self) -> str | None:
        return self.email_address

    @strawberry.field
    async def categories(
        self, info: Info, first: int | None = 20, after: str | None = strawberry.UNSET
    ) -> CategoryConnection:
        limit = page_size(first)
        after_id = decode_cursor(after)
        rows = await info.context.loaders.categories_by_owner.load((self.pk, after_id, limit + 1))
        return await category_page(info, rows, limit)

    @classmethod
    def of(cls, row: models.User) -> UserType:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            picture_url=row.picture_url,
            role=row.role,
            created_at=row.created_at,
            pk=row.id,
            email_address=row.email,
        )


@strawberry.type(name="Category")
class CategoryType:
    id: strawberry.ID
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime
    owner_id: strawberry.Private[int]
    # Set when the page that produced this category loaded all owners in one batch.
    prefetched_owner: strawberry.Private[UserType | None] = None

    # Compiled plans read `prefetched_owner` themselves and call this only when it is None.
    @strawberry.field(metadata={"prefetched": "prefetched_owner"})
    def owner(self, info: Info) -> UserType:
        # Synchronous when prefetched: no per-item awaitable for the executor to drive.
        if self.prefetched_owner is not None:
            return self.prefetched_owner
        return cast(UserType, _load_owner(info, self.owner_id))

    @classmethod
    def of(cls, row: CategoryRow, owner: UserType | None = None) -> CategoryType:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            description=row.description,
            created_at=row.created_at,
            updated_at=row.updated_at,
            owner_id=row.owner_id,
            prefetched_owner=owner,
        )


async def _load_owner(info: Info, owner_id: int) -> UserType:
    row = await info.context.loaders.user_by_id.load(owner_id)
    if row is None:
        raise NotFound("Owner not found.")
    return UserType.of(row)


def selects(info: Info, *path: str) -> bool:
    """Whether the query selects ``path`` below this field (plain fields only; a
    fragment on the way answers False, and the data is then loaded lazily)."""
    nodes = info._raw_info.field_nodes
    for name in path:
        found = []
        for node in nodes:
            for selection in node.selection_set.selections if node.selection_set else ():
                if isinstance(selection, FieldNode) and selection.name.value == name:
                    found.append(selection)
        if not found:
            return False
        nodes = found
    return True


async def category_page(info: Info, rows: Sequence[CategoryRow], limit: int) -> CategoryConnection:
    """A connection of ``rows``, with all their owners loaded in one batch if selected."""
    owners: dict[int, UserType] = {}
    if rows and selects(info, "edges", "node", "owner"):
        ids = list({row.owner_id for row in rows[:limit]})
        loaded = await info.context.loaders.user_by_id.load_many(ids)
        owners = {user.id: UserType.of(user) for user in loaded if user is not None}
    return CategoryConnection.build(rows, limit, owners)


@strawberry.type
class UserEdge:
    cursor: str
    node: UserType


@strawberry.type
class UserConnection:
    edges: list[UserEdge]
    page_info: PageInfo

    @classmethod
    def build(cls, rows: list[models.User], limit: int) -> UserConnection:
        edges = [UserEdge(cursor=encode_cursor(r.id), node=UserType.of(r)) for r in rows[:limit]]
        end = edges[-1].cursor if edges else None
        return cls(edges=edges, page_info=PageInfo(has_next_page=len(rows) > limit, end_cursor=end))


@strawberry.type
class CategoryEdge:
    cursor: str
    node: CategoryType


@strawberry.type
class CategoryConnection:
    edges: list[CategoryEdge]
    page_info: PageInfo

    @classmethod
    def build(
        cls, rows: Sequence[CategoryRow], limit: int, owners: dict[int, UserType] | None = None
    ) -> CategoryConnection:
        owners = owners or {}
        edges = [
            CategoryEdge(
                cursor=encode_cursor(r.id), node=CategoryType.of(r, owners.get(r.owner_id))
            )
            for r in rows[:limit]
        ]
        end = edges[-1].cursor if edges else None
        return cls(edges=edges, page_info=PageInfo(has_next_page=len(rows) > limit, end_cursor=end))


@strawberry.type
class AuthPayload:
    access_token: str
    refresh_token: str | None
    token_type: str
    expires_in: int
    user: UserType


@strawberry.type(name="Session")
class SessionType:
    id: strawberry.ID
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    current: bool


@strawberry.input
class UpdateUserInput:
    name: str | None = strawberry.UNSET
    picture_url: str | None = strawberry.UNSET
    role: Role | None = strawberry.UNSET


@strawberry.input
class CreateCategoryInput:
    name: str
    description: str | None = strawberry.UNSET


@strawberry.input
class UpdateCategoryInput:
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
