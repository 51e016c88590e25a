"""Cached execution plans answer exactly what graphql-core's executor answers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import GraphQLClient

QUERIES: list[tuple[str, dict[str, Any] | None]] = [
    ("{ __typename }", None),
    ("{ me { id name email role pictureUrl createdAt __typename } }", None),
    ("{ categories(first: 100) { edges { node { id name owner { id name } } } } }", None),
    (
        "query($first: Int, $after: String) { categories(first: $first, after: $after) "
        "{ edges { cursor node { id name description createdAt updatedAt owner { email } } } "
        "pageInfo { hasNextPage endCursor } } }",
        {"first": 2, "after": None},
    ),
    (
        "{ a: me { id } b: me { name } me { id email } users { edges { node { id email "
        "categories(first: 1) { edges { node { name owner { name } } } } } } } }",
        None,
    ),
    (
        "query Q($id: ID!) { user(id: $id) { ...U categories { pageInfo { hasNextPage } } } "
        'other: user(id: "999") { id } } fragment U on User { id name email }',
        {"id": "1"},
    ),
    ("{ mySessions { current userAgent } }", None),
    ('{ category(id: "1") { name ... on Category { owner { id } } } }', None),
    ("{ categories(first: 101) { edges { cursor } } }", None),  # an error: no plan answers
    ("{ me { id @include(if: true) } }", None),  # directives: not compiled
    (  # over the cost budget only through its variables: the plan must refuse too
        "query($f: Int) { users(first: $f) { edges { node { "
        "categories(first: $f) { edges { node { id } } } } } } }",
        {"f": 100},
    ),
]


async def _answers(client: GraphQLClient) -> list[dict[str, Any]]:
    answers = []
    for query, variables in QUERIES:
        answers.append(await client.gql(query, variables))
    return answers


@pytest.mark.parametrize("repeat", [2])
async def test_plans_answer_like_the_executor(
    user: GraphQLClient, other_user: GraphQLClient, app: Any, app_client: Any, repeat: int
) -> None:
    for name in ("Books", "Music", "Films"):
        await user.data(
            "mutation($n: String!) { createCategory(input: {name: $n}) { id } }", {"n": name}
        )
    await other_user.data('mutation { createCategory(input: {name: "Theirs"}) { id } }')

    reference: GraphQLClient = await app_client(compiled_execution=False)
    reference.token = user.token
    expected = await _answers(reference)

    endpoint_plans = _plans(app)
    before = endpoint_plans.hits
    for _ in range(repeat):
        assert await _answers(user) == expected
    # From the second round on, every query but three: two errors and a directive.
    assert endpoint_plans.hits - before == (repeat - 1) * (len(QUERIES) - 3)


async def test_a_plan_falls_back_to_the_executor_for_errors(
    anonymous: GraphQLClient, app: Any
) -> None:
    first = await anonymous.gql("{ me { id } }")
    second = await anonymous.gql("{ me { id } }")
    assert first == second
    assert first["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def _plans(app: Any) -> Any:
    for route in app.routes:
        endpoint = getattr(route, "endpoint", None)
        owner = getattr(endpoint, "__self__", None)
        if owner is not None and hasattr(owner, "plans"):
            return owner.plans
    raise AssertionError("no GraphQL endpoint")
