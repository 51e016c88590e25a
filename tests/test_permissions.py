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
    IsSelf,
    IsSelfOrAdmin,
    guard,
)
from graphql_api.engine import Engine, EngineConfig, EngineSchema, GraphQLRequest
from graphql_api.errors import Unauthenticated
from graphql_api.records import Role


@dataclass
class FakeContext:
    user_id: int | None
    role: Role = Role.USER
    request_id: str = "test"
    viewer_loads: list[int] = field(default_factory=list)

    @property
    def caller(self) -> Any:
        return SimpleNamespace(user_id=self.user_id) if self.user_id else None

    def unauthenticated(self) -> Unauthenticated:
        return Unauthenticated()

    async def viewer(self) -> Any:
        if self.user_id is None:
            return None
        self.viewer_loads.append(self.user_id)
        return SimpleNamespace(id=self.user_id, role=self.role)


@strawberry.type
class Profile:
    pk: strawberry.Private[int]
    shown_to_self: strawberry.Private[bool] = False

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

    @strawberry.field
    def signed_in_as(self, id: strawberry.ID) -> Profile:
        return Profile(pk=int(id), shown_to_self=True)

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


async def test_the_account_just_signed_in_to_shows_its_email_to_an_anonymous_request() -> None:
    # An auth payload's user: the request had no token yet, the mutation just signed in.
    data, codes = await run('{ signedInAs(id: "7") { email } }', FakeContext(user_id=None))
    assert data == {"signedInAs": {"email": "secret@example.com"}} and codes == []


async def test_self_is_decided_without_loading_the_viewer() -> None:
    context = FakeContext(user_id=7)
    await run('{ profileOf(id: "7") { __typename } }', context)
    assert context.viewer_loads == []


async def test_any_of_passes_when_any_member_passes() -> None:
    assert (await run('{ composed(id: "5") }', FakeContext(5)))[1] == []
    assert (await run('{ composed(id: "5") }', FakeContext(6, Role.ADMIN)))[1] == []
    assert (await run('{ composed(id: "5") }', FakeContext(6)))[1] == ["FORBIDDEN"]
