"""Cached execution plans answer exactly what graphql-core's executor answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
import strawberry
from graphql import parse
from graphql.execution.values import get_variable_values

from graphql_api.engine import EngineSchema
from graphql_api.engine.plans import Compiler, Plan, plain_attribute, prefetched_attribute
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
    # Owners not prefetched (a single category; a fragment hides the owner from the page):
    # the plan calls the owner resolver and its loader.
    ('{ category(id: "2") { id owner { id name email } } }', None),
    (
        "{ categories(first: 10) { edges { node { id ...O } } } } "
        "fragment O on Category { owner { id name } }",
        None,
    ),
    (  # prefetched pages below a fallback owner
        '{ category(id: "4") { owner { name categories(first: 5) { edges { node { name '
        "owner { id } } } } } } }",
        None,
    ),
    ("{ categories(first: 101) { edges { cursor } } }", None),  # an error: no plan answers
    ("{ me { id @include(if: true) name @skip(if: true) } }", None),  # decided when compiling
    (
        "query($a: Boolean!, $b: Boolean!) { me { id @include(if: $a) name @skip(if: $b) "
        "...F @include(if: $b) } } fragment F on User { role }",
        {"a": False, "b": True},
    ),
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

    engine = app.state.engine
    # The engine's plans read prefetched owners (and call the resolver for the others).
    assert engine.plans.compiler.prefetched("Category", "owner") == "prefetched_owner"
    before = engine.stats.plan_hits
    for _ in range(repeat):
        assert await _answers(user) == expected
    # Every query but the two that report errors, from the first request on.
    assert engine.stats.plan_hits - before == repeat * (len(QUERIES) - 2)


async def test_a_plan_falls_back_to_the_executor_for_errors(
    anonymous: GraphQLClient, app: Any
) -> None:
    first = await anonymous.gql("{ me { id } }")
    second = await anonymous.gql("{ me { id } }")
    assert first == second
    assert first["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# A schema of its own, to check the response paths resolvers see and which resolvers run.
TWIN_CALLS: list[int] = []


@strawberry.type
class Node:
    n: int
    prefetched_twin: strawberry.Private[Node | None] = None

    @strawberry.field(metadata={"prefetched": "prefetched_twin"})
    def twin(self) -> Node:
        TWIN_CALLS.append(self.n)
        return self.prefetched_twin or Node(n=-self.n)

    @strawberry.field
    def where(self, info: strawberry.Info) -> str:
        return ".".join(str(key) for key in info.path.as_list())


@strawberry.type
class Holder:
    label: str
    nodes: list[Node]


@strawberry.type
class TwinQuery:
    @strawberry.field
    def holders(self) -> list[Holder]:
        return [
            Holder(label=str(h), nodes=[Node(n=n, prefetched_twin=Node(n=100 + n)) for n in (1, 2)])
            for h in range(2)
        ] + [Holder(label="lazy", nodes=[Node(n=3), Node(n=4, prefetched_twin=Node(n=104))])]


TWIN_QUERIES = [
    "{ holders { label nodes { n twin { n } } } }",
    "{ holders { label nodes { n a: where twin { n where twin { where } } } } }",
    "{ holders { nodes { ...N } } } fragment N on Node { twin { b: where n } }",
]


@pytest.mark.parametrize("query", TWIN_QUERIES)
async def test_prefetched_fields_and_paths_answer_like_the_executor(query: str) -> None:
    schema = EngineSchema(query=TwinQuery)
    prefetched = prefetched_attribute(schema)
    assert prefetched("Node", "twin") == "prefetched_twin"
    assert prefetched("Node", "where") is None
    compiler = Compiler(schema._schema, plain_attribute(schema), prefetched)
    plan = compiler.compile(parse(query), None)
    assert isinstance(plan, Plan)

    TWIN_CALLS.clear()
    expected = await schema.execute(query)
    assert expected.errors is None
    executor_calls = sorted(TWIN_CALLS)

    TWIN_CALLS.clear()
    variables = get_variable_values(schema._schema, [], {})
    assert not isinstance(variables, list)
    data = await plan.run(schema._schema, None, variables)
    assert json.dumps(data) == json.dumps(expected.data)
    # The plan calls the resolver only for the nodes without a prefetched twin (1, 2, 4 have one).
    assert sorted(TWIN_CALLS) == [n for n in executor_calls if n not in (1, 2, 4)]
    assert 3 in TWIN_CALLS
