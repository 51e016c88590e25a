"""Error masking end to end: every failure has a contract code and no internals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from graphql_api.container import Container
from tests.conftest import GraphQLClient, error_codes
from tests.security.conftest import assert_no_internals

pytestmark = pytest.mark.both_databases

CREATE = "mutation($name: String!) { createCategory(input: {name: $name}) { id } }"


async def test_a_resolver_crash_is_masked(
    user: GraphQLClient, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(**_: Any) -> None:
        raise RuntimeError("secret: SELECT password FROM users WHERE 1=1")

    monkeypatch.setattr(container.categories, "create", explode)
    response = await user.post(CREATE, {"name": "boom"})
    body = response.json()
    assert response.status_code == 200
    assert body["errors"] == [
        {
            "message": "Unexpected error.",
            "locations": [{"line": 1, "column": 28}],
            "path": ["createCategory"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
    ]
    assert "secret" not in response.text


async def test_a_database_error_is_masked(
    user: GraphQLClient, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise OperationalError("SELECT * FROM users", {"p": 1}, Exception("connection lost"))

    monkeypatch.setattr(container.db, "reader", broken)
    response = await user.post("{ users { edges { node { id } } } }")
    assert error_codes(response.json()) == ["INTERNAL_SERVER_ERROR"]
    assert_no_internals(response.text)
    assert "SELECT" not in response.text and "connection lost" not in response.text


async def test_racing_duplicate_category_names_get_one_winner_and_clean_errors(
    user: GraphQLClient, other_user: GraphQLClient
) -> None:
    attempts = [client.post(CREATE, {"name": "Raced"}) for client in (user, other_user) * 4]
    responses = await asyncio.gather(*attempts)
    bodies = [r.json() for r in responses]
    winners = [b for b in bodies if "errors" not in b]
    losers = [b for b in bodies if "errors" in b]
    assert len(winners) == 1, bodies
    for body in losers:
        assert error_codes(body) == ["BAD_USER_INPUT"], body
        assert body["errors"][0]["message"] == "A category with this name already exists."
    for response in responses:
        assert_no_internals(response.text)
        assert "UNIQUE" not in response.text and "IntegrityError" not in response.text


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{", None),
        ("{ me { id }", None),
        ("query($a: Int!) { users(first: $a) { pageInfo { hasNextPage } } }", {"a": "many"}),
        ("query($a: Int!) { users(first: $a) { pageInfo { hasNextPage } } }", None),
        (
            "mutation($i: CreateCategoryInput!) { createCategory(input: $i) { id } }",
            {"i": {"name": 1}},
        ),
        (
            "mutation($i: CreateCategoryInput!) { createCategory(input: $i) { id } }",
            {"i": {"name": "x", "extra": 1}},
        ),
        ("query($a: Int) { users(first: $a) { pageInfo { hasNextPage } } }", {"a": 1.5}),
        ("subscription { me { id } }", None),
        ("{ user(id: 1.5) { id } }", None),
        ('{ users(first: "1") { pageInfo { hasNextPage } } }', None),
    ],
    ids=[
        "syntax",
        "unclosed",
        "variable-wrong-type",
        "variable-missing",
        "input-wrong-type",
        "input-extra-field",
        "float-for-int",
        "subscription",
        "float-for-id",
        "string-for-int",
    ],
)
async def test_pre_execution_errors_are_bad_user_input(
    user: GraphQLClient, query: str, variables: dict[str, Any] | None
) -> None:
    response = await user.post(query, variables)
    assert response.status_code < 500
    codes = error_codes(response.json())
    assert codes and set(codes) == {"BAD_USER_INPUT"}, response.text
    assert_no_internals(response.text)
