"""Permission classes on a small schema, executed directly: no HTTP, no database."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import strawberry

from graphql_api.api.permissions import (
    AnyOf,
    IsAdmin,
    IsAuthenticated,
    IsOwnerOrAdmin,
    IsSelf,
    IsSelfOrAdmin,
    guard,
)
from graphql_api.db.models import Role
from graphql_api.engine import Engine, EngineConfig, EngineSchema, GraphQLRequest


class Loader:
    def __init__(self, rows: dict[int, Any]) -> None:
        self.rows = rows
        self.loads = 0

    async def load(self, key: int) -> Any:
        self.loads += 1
        return self.rows.get(key)


@dataclass
class FakeContext:
    user_id: int | None
    role: Role = Role.USER
    categories: dict[int, Any] = field(default_factory=dict)
    signed_in_user_ids: set[int] = field(default_factory=set)
    request_id: str = "test"

    def __post_init__(self) -> None:
        self.loaders = SimpleNamespace(category_by_id=Loader(self.categories))

    async def viewer(self) -> Any:
        return SimpleNamespace(id=self.user_id, role=self.role) if self.user_id else None


@strawberry.type
class Profile:
    pk: strawberry.Private[int]

    @strawberry.field(extensions=[guard(IsSelfOrAdmin(), silent=True)])
    def email(self) -> str | None:
        return "secret@example.com"


@strawberry.type
class Query:
    @strawberry.field(extensions=[guard(IsAuthenticated())])
    def private(self) -> str:
        return "ok"

    @strawberry.field(extensions=[guard(IsAuthenticated(), IsAdmin())])
    def admin_only(self) -> str:
        return "ok"

    @strawberry.field(extensions=[guard(IsAuthenticated(), IsSelfOrAdmin())])
    def profile_of(self, id: strawberry.ID) -> Profile:
        return Profile(pk=int(id))

    @strawberry.field
    def profile(self, id: strawberry.ID) -> Profile:
        return Profile(pk=int(id))

    @strawberry.field(extensions=[guard(IsAuthenticated(), IsOwnerOrAdmin())])
    def category(self, id: strawberry.ID) -> str:
        return f"category {id}"

    @strawberry.field(extensions=[guard(AnyOf(IsSelf(), IsAdmin()))])
    def composed(self, id: strawberry.ID) -> str:
        return "ok"

    @strawberry.field
    def public(self) -> str:
        return "hello"


engine = Engine(EngineSchema(query=Query), EngineConfig(compiled=False))


async def run(query: str, context: FakeContext) -> tuple[Any, list[str]]:
    result = await engine.execute(GraphQLRequest(query=query), context)
    return result.data, result.codes


async def test_anonymous_is_unauthenticated_but_public_fields_still_work() -> None:
    data, codes = await run("{ private }", FakeContext(user_id=None))
    assert codes == ["UNAUTHENTICATED"]
    data, codes = await run("{ public }", FakeContext(user_id=None))
    assert data == {"public": "hello"} and codes == []


@pytest.mark.parametrize(("role", "expected"), [(Role.USER, ["FORBIDDEN"]), (Role.ADMIN, [])])
async def test_is_admin(role: Role, expected: list[str]) -> None:
    _, codes = await run("{ adminOnly }", FakeContext(user_id=1, role=role))
    assert codes == expected


@pytest.mark.parametrize(
    ("user_id", "role", "expected"),
    [(7, Role.USER, []), (8, Role.USER, ["FORBIDDEN"]), (8, Role.ADMIN, [])],
)
async def test_is_self_or_admin(user_id: int, role: Role, expected: list[str]) -> None:
    _, codes = await run('{ profileOf(id: "7") { __typename } }', FakeContext(user_id, role))
    assert codes == expected


async def test_silent_permission_answers_null_without_an_error() -> None:
    data, codes = await run('{ profile(id: "7") { email } }', FakeContext(user_id=8))
    assert data == {"profile": {"email": None}} and codes == []
    data, _ = await run('{ profile(id: "7") { email } }', FakeContext(user_id=7))
    assert data == {"profile": {"email": "secret@example.com"}}


@pytest.mark.parametrize(
    ("user_id", "role", "category_id", "expected"),
    [
        (1, Role.USER, "10", []),
        (2, Role.USER, "10", ["FORBIDDEN"]),
        (2, Role.ADMIN, "10", []),
        (1, Role.USER, "11", ["NOT_FOUND"]),
        (2, Role.ADMIN, "11", ["NOT_FOUND"]),
    ],
)
async def test_is_owner_or_admin(
    user_id: int, role: Role, category_id: str, expected: list[str]
) -> None:
    context = FakeContext(user_id, role, categories={10: SimpleNamespace(owner_id=1)})
    _, codes = await run(f'{{ category(id: "{category_id}") }}', context)
    assert codes == expected


async def test_object_level_check_loads_the_object_once() -> None:
    context = FakeContext(2, Role.ADMIN, categories={10: SimpleNamespace(owner_id=1)})
    await run('{ category(id: "10") }', context)
    assert context.loaders.category_by_id.loads == 1


async def test_any_of_passes_when_any_member_passes() -> None:
    assert (await run('{ composed(id: "5") }', FakeContext(5)))[1] == []
    assert (await run('{ composed(id: "5") }', FakeContext(6, Role.ADMIN)))[1] == []
    assert (await run('{ composed(id: "5") }', FakeContext(6)))[1] == ["FORBIDDEN"]
