"""The GraphQL object types, built from read records (plain attributes, few resolvers).

Every type, field and argument has a description: the schema is the frontend's manual,
so each says what it is and which permission it needs.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, cast

import strawberry
from graphql import FieldNode

from graphql_api.api.context import Info
from graphql_api.api.pagination import MAX_PAGE, decode_cursor, encode_cursor, page_size
from graphql_api.api.permissions import IsSelfOrAdmin, guard
from graphql_api.errors import NotFound
from graphql_api.records import CategoryRecord, Role, SessionRecord, UserRecord

First = Annotated[
    int | None,
    strawberry.argument(
        description=f"How many items, 0 to {MAX_PAGE} (default 20); more is BAD_USER_INPUT."
    ),
]
After = Annotated[
    str | None,
    strawberry.argument(
        description="Return the items after this cursor (an `endCursor` or an edge's `cursor`)."
    ),
]


@strawberry.enum(name="Role", description="What an account may do.")
class RoleType(enum.Enum):
    USER = strawberry.enum_value("USER", description="A signed-in user: manages their own data.")
    ADMIN = strawberry.enum_value(
        "ADMIN", description="Manages every account and category, and changes roles."
    )

    @classmethod
    def of(cls, role: Role) -> RoleType:
        return cls[role.name]

    def domain(self) -> Role:
        return Role[self.name]


@strawberry.type(description="Where a page ends, and whether another follows.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="Whether items follow this page.")
    end_cursor: str | None = strawberry.field(
        description="The cursor of the last item of this page (pass it as `after`); null if empty."
    )


@strawberry.type(
    name="User",
    description="An account, created at its first Google sign-in. Any signed-in caller can "
    "read users; only the user themself or an ADMIN sees the email.",
)
class UserType:
    id: strawberry.ID = strawberry.field(description="The user's id.")
    name: str = strawberry.field(description="Display name, 1 to 100 characters.")
    picture_url: str | None = strawberry.field(
        description="An https URL of the user's picture, or null."
    )
    role: RoleType = strawberry.field(description="USER or ADMIN.")
    created_at: datetime = strawberry.field(description="When the account was created (UTC).")
    pk: strawberry.Private[int]
    email_address: strawberry.Private[str]
    # The account the caller has just signed in to (auth payloads): its email is shown.
    shown_to_self: strawberry.Private[bool] = False

    @strawberry.field(
        description="Only the user themself and admins see it; everyone else gets null (no error).",
        extensions=[guard(IsSelfOrAdmin(), silent=True)],
    )
    def email(self) -> str | None:
        return self.email_address

    @strawberry.field(description="The categories this user owns, oldest first.")
    async def categories(
        self,
        info: Info,
        first: First = 20,
        after: After = strawberry.UNSET,
    ) -> CategoryConnection:
        limit = page_size(first)
        after_id = decode_cursor(after)
        rows = await info.context.loaders.categories_by_owner.load((self.pk, after_id, limit + 1))
        # Every category of this page is owned by this user: no owner to load.
        return CategoryConnection.build(rows, limit, {self.pk: self})

    @classmethod
    def of(cls, record: UserRecord, *, shown_to_self: bool = False) -> UserType:
        return cls(
            id=strawberry.ID(str(record.id)),
            name=record.name,
            picture_url=record.picture_url,
            role=RoleType.of(record.role),
            created_at=record.created_at,
            pk=record.id,
            email_address=record.email,
            shown_to_self=shown_to_self,
        )


@strawberry.type(
    name="Category",
    description="A named category owned by one user. Any signed-in caller can read "
    "categories; only the owner or an ADMIN changes or deletes one.",
)
class CategoryType:
    id: strawberry.ID = strawberry.field(description="The category's id.")
    name: str = strawberry.field(
        description="1 to 100 characters, unique ignoring case and Unicode compatibility forms."
    )
    description: str | None = strawberry.field(description="Up to 1000 characters, or null.")
    created_at: datetime = strawberry.field(description="When it was created (UTC).")
    updated_at: datetime = strawberry.field(description="When it last changed (UTC).")
    owner_id: strawberry.Private[int]
    # Set when the page that produced this category loaded all owners in one batch.
    prefetched_owner: strawberry.Private[UserType | None] = None

    # Compiled plans read `prefetched_owner` themselves and call this only when it is None.
    @strawberry.field(
        description="The user who owns it.", metadata={"prefetched": "prefetched_owner"}
    )
    def owner(self, info: Info) -> UserType:
        # Synchronous when prefetched: no per-item awaitable for the executor to drive.
        if self.prefetched_owner is not None:
            return self.prefetched_owner
        return cast(UserType, _load_owner(info, self.owner_id))

    @classmethod
    def of(cls, record: CategoryRecord, owner: UserType | None = None) -> CategoryType:
        return cls(
            id=strawberry.ID(str(record.id)),
            name=record.name,
            description=record.description,
            created_at=record.created_at,
            updated_at=record.updated_at,
            owner_id=record.owner_id,
            prefetched_owner=owner,
        )


async def _load_owner(info: Info, owner_id: int) -> UserType:
    record = await info.context.loaders.user_by_id.load(owner_id)
    if record is None:
        raise NotFound("Owner not found.")
    return UserType.of(record)


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


@strawberry.type(description="A user in a page of users.")
class UserEdge:
    cursor: str = strawberry.field(description="Pass it as `after` to continue after this user.")
    node: UserType = strawberry.field(description="The user.")


@strawberry.type(description="A page of users, by id.")
class UserConnection:
    edges: list[UserEdge] = strawberry.field(description="The users of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page ends.")

    @classmethod
    def build(cls, rows: Sequence[UserRecord], limit: int) -> UserConnection:
        edges = [UserEdge(cursor=encode_cursor(r.id), node=UserType.of(r)) for r in rows[:limit]]
        end = edges[-1].cursor if edges else None
        return cls(edges=edges, page_info=PageInfo(has_next_page=len(rows) > limit, end_cursor=end))


@strawberry.type(description="A category in a page of categories.")
class CategoryEdge:
    cursor: str = strawberry.field(
        description="Pass it as `after` to continue after this category."
    )
    node: CategoryType = strawberry.field(description="The category.")


@strawberry.type(description="A page of categories, by id.")
class CategoryConnection:
    edges: list[CategoryEdge] = strawberry.field(description="The categories of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page ends.")

    @classmethod
    def build(
        cls,
        rows: Sequence[CategoryRecord],
        limit: int,
        owners: dict[int, UserType] | None = None,
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


@strawberry.type(description="Our own tokens, after a Google sign-in or a refresh.")
class AuthPayload:
    access_token: str = strawberry.field(
        description="Send as `Authorization: Bearer <accessToken>`; keep it in memory only."
    )
    refresh_token: str | None = strawberry.field(
        description="Single use: exchange it with `refreshToken` for new tokens. Null when it "
        "travels in the HttpOnly cookie (header `X-Refresh-Token-Transport: cookie`)."
    )
    token_type: str = strawberry.field(description='Always "Bearer".')
    expires_in: int = strawberry.field(description="Seconds until `accessToken` expires.")
    user: UserType = strawberry.field(description="The signed-in user; its email is visible here.")


@strawberry.type(name="Session", description="One sign-in of the caller, on one device.")
class SessionType:
    id: strawberry.ID = strawberry.field(description="Pass it to `revokeSession` to end it.")
    created_at: datetime = strawberry.field(description="When the sign-in happened (UTC).")
    last_used_at: datetime = strawberry.field(description="When its tokens were last refreshed.")
    user_agent: str | None = strawberry.field(
        description="The client's User-Agent, if it sent one."
    )
    current: bool = strawberry.field(description="Whether this request comes from this session.")

    @classmethod
    def of(cls, record: SessionRecord, *, current_id: str | None) -> SessionType:
        return cls(
            id=strawberry.ID(record.id),
            created_at=record.created_at,
            last_used_at=record.last_used_at,
            user_agent=record.user_agent,
            current=record.id == current_id,
        )


@strawberry.input(description="What to change on a user; fields left out stay as they are.")
class UpdateUserInput:
    name: str | None = strawberry.field(
        default=strawberry.UNSET, description="1 to 100 characters, trimmed; no control characters."
    )
    picture_url: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="An https URL (at most 2048 characters, no credentials); null removes it.",
    )
    role: RoleType | None = strawberry.field(
        default=strawberry.UNSET, description="ADMIN only: the user's new role."
    )


@strawberry.input(description="A new category; its owner is always the caller.")
class CreateCategoryInput:
    name: str = strawberry.field(
        description="1 to 100 characters, trimmed; unique ignoring case and compatibility forms."
    )
    description: str | None = strawberry.field(
        default=strawberry.UNSET, description="Up to 1000 characters, or null."
    )


@strawberry.input(description="What to change on a category; fields left out stay as they are.")
class UpdateCategoryInput:
    name: str | None = strawberry.field(
        default=strawberry.UNSET, description="1 to 100 characters, trimmed; unique."
    )
    description: str | None = strawberry.field(
        default=strawberry.UNSET, description="Up to 1000 characters; null removes it."
    )
