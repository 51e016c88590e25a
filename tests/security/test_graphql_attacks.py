"""GraphQL attacks after graphql-cop's checks, and beyond, against the running app.

Most run against the production build (``production_client``); where development
behaves differently on purpose (introspection, suggestions, GraphiQL) both are shown.
Every query-cost attack must be refused with BAD_USER_INPUT before any resolver runs.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from graphql import get_introspection_query

from tests.conftest import GraphQLClient, error_codes
from tests.security.conftest import assert_no_internals

HOSTILE_BOUND_SECONDS = 2.0  # generous for slow CI; locally these answer in milliseconds


def assert_refused(body: dict[str, Any], fragment: str = "") -> None:
    assert body.get("data") is None, body
    assert error_codes(body) and set(error_codes(body)) == {"BAD_USER_INPUT"}, body
    if fragment:
        assert any(fragment in e["message"] for e in body["errors"]), body


def doubling_fragments(levels: int, leaf: str = "__typename") -> str:
    """``{ ...F0 }`` where each fragment spreads the next twice: 2**levels leaves."""
    chain = "".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}\n" for i in range(levels)
    )
    return f"{{ ...F0 }}\n{chain}fragment F{levels} on Query {{ {leaf} }}\n"


# --- introspection, suggestions, GraphiQL, trace --------------------------------


async def test_introspection_is_disabled_in_production(production_client: GraphQLClient) -> None:
    body = await production_client.gql(get_introspection_query())
    assert_refused(body, "introspection")
    body = await production_client.gql('{ __type(name: "User") { fields { name } } }')
    assert_refused(body, "introspection")


async def test_introspection_works_in_development_for_graphiql(anonymous: GraphQLClient) -> None:
    data = await anonymous.data(get_introspection_query())
    assert data["__schema"]["queryType"]["name"] == "Query"


@pytest.mark.parametrize("env", ["production", "development"])
async def test_circular_introspection_is_refused(
    production_client: GraphQLClient, anonymous: GraphQLClient, env: str
) -> None:
    client = production_client if env == "production" else anonymous
    loop = "fields { type { %s } }"
    query = "{ __schema { types { " + loop % (loop % (loop % "name")) + " } } }"
    assert_refused(await client.gql(query))


async def test_no_field_suggestions_in_production(production_client: GraphQLClient) -> None:
    for query in (
        "{ mee { id } }",
        "{ me { emial } }",
        "mutation { logot }",
        "{ users(frist: 1) { pageInfo { hasNextPage } } }",
    ):
        body = await production_client.gql(query)
        assert_refused(body)
        assert "Did you mean" not in str(body), body


async def test_field_suggestions_only_in_development(anonymous: GraphQLClient) -> None:
    body = await anonymous.gql("{ mee { id } }")
    assert "Did you mean" in body["errors"][0]["message"]


async def test_graphiql_is_not_served_in_production(production_client: GraphQLClient) -> None:
    response = await production_client.http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 405
    assert "graphiql" not in response.text.lower()


async def test_graphiql_is_served_in_development_with_its_own_csp(anonymous: GraphQLClient) -> None:
    response = await anonymous.http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200 and "graphiql" in response.text.lower()
    assert "unpkg.com" in response.headers["content-security-policy"]


@pytest.mark.parametrize("env", ["production", "development"])
async def test_no_tracing_or_debug_output(
    production_client: GraphQLClient, anonymous: GraphQLClient, env: str
) -> None:
    client = production_client if env == "production" else anonymous
    for query in ("{ __typename }", "{ me { id } }", "{ nope }", "{"):
        body = await client.gql(query)
        assert set(body) <= {"data", "errors"}, body
        for error in body.get("errors", []):
            assert set(error) <= {"message", "locations", "path", "extensions"}, error
            assert set(error["extensions"]) <= {"code", "field", "retryAfter"}, error
            assert_no_internals(error["message"])


# --- GET and CSRF ---------------------------------------------------------------


@pytest.mark.parametrize("env", ["production", "development"])
@pytest.mark.parametrize(
    "query", ["{ __typename }", "mutation { logout }"], ids=["query", "mutation"]
)
async def test_queries_and_mutations_never_run_over_get(
    production_client: GraphQLClient, user: GraphQLClient, env: str, query: str
) -> None:
    client = production_client if env == "production" else user
    headers = {"authorization": f"Bearer {user.token}"}
    response = await client.http.get("/graphql", params={"query": query}, headers=headers)
    assert response.status_code == 405
    assert "data" not in response.json()
    # The session survived the GET "logout".
    assert (await user.data("{ me { id } }"))["me"]["id"] == user.user_id


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("application/x-www-form-urlencoded", b"query=mutation+%7B+logout+%7D"),
        ("text/plain", b'{"query": "mutation { logout }"}'),
        ("text/plain;charset=UTF-8", b'{"query": "mutation { logout }"}'),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="query"\r\n\r\n'
            b"mutation { logout }\r\n--x--\r\n",
        ),
        ("application/graphql", b"mutation { logout }"),
        ("", b'{"query": "mutation { logout }"}'),
    ],
    ids=[
        "urlencoded",
        "text-plain",
        "text-plain-charset",
        "multipart",
        "application-graphql",
        "none",
    ],
)
async def test_csrf_simple_requests_are_refused(
    user: GraphQLClient, content_type: str, content: bytes
) -> None:
    headers = {"authorization": f"Bearer {user.token}", "content-type": content_type}
    response = await user.http.post("/graphql", content=content, headers=headers)
    assert 400 <= response.status_code < 500
    assert (await user.data("{ me { id } }"))["me"]["id"] == user.user_id


# --- batching, aliases, directives, duplication, depth, fragments -------------------


async def test_array_batching_is_refused(user: GraphQLClient) -> None:
    batch = [{"query": "mutation { logout }"}, {"query": "{ me { id } }"}]
    response = await user.http.post(
        "/graphql", json=batch, headers={"authorization": f"Bearer {user.token}"}
    )
    assert response.status_code == 400
    assert (await user.data("{ me { id } }"))["me"]["id"] == user.user_id


async def test_alias_overloading_is_refused(production_client: GraphQLClient) -> None:
    query = "{ " + " ".join(f"a{i}: __typename" for i in range(100)) + " }"
    assert_refused(await production_client.gql(query), "aliases")


async def test_aliases_are_counted_through_fragment_spreads(
    production_client: GraphQLClient,
) -> None:
    fragment = " ".join(f"a{i}: __typename" for i in range(6))
    query = f"{{ ...A ...A ...A }} fragment A on Query {{ {fragment} }}"
    assert_refused(await production_client.gql(query), "aliases")


async def test_alias_overloaded_mutation_runs_no_resolver(user: GraphQLClient) -> None:
    mutation = (
        "mutation { "
        + " ".join(
            f'c{i}: createCategory(input: {{name: "alias-{i}"}}) {{ id }}' for i in range(16)
        )
        + " }"
    )
    assert_refused(await user.gql(mutation), "aliases")
    data = await user.data("{ categories { edges { node { id } } } }")
    assert data["categories"]["edges"] == []


async def test_directive_overloading_is_refused(production_client: GraphQLClient) -> None:
    for directive in ("@aa", "@include(if: true)", "@skip(if: false)"):
        query = "{ __typename " + " ".join([directive] * 200) + " }"
        assert_refused(await production_client.gql(query), "directives")


@pytest.mark.parametrize(
    "query",
    [
        # graphql-cop's probe, verbatim: ten copies of an unknown directive.
        "query cop { __typename @aa@aa@aa@aa@aa@aa@aa@aa@aa@aa }",
        "{ __typename " + "@skip(if: false) " * 10 + "}",
        "{ me { id @include(if: true) @include(if: true) @include(if: true) } }",
        "query Q @aa @bb @cc { __typename }",
    ],
    ids=["unknown", "repeated-skip", "repeated-include", "on-operation"],
)
async def test_overloaded_directives_are_answered_with_one_error(
    production_client: GraphQLClient, user: GraphQLClient, query: str
) -> None:
    # Under MAX_DIRECTIVES, so only the directive rule itself can refuse it: one error for
    # the whole document, never one per copy (graphql-cop counts them).
    for client in (production_client, user):
        body = await client.gql(query)
        assert_refused(body)
        assert len(body["errors"]) == 1, body


async def test_field_duplication_is_refused(production_client: GraphQLClient) -> None:
    query = "{ " + "__typename " * 500 + "}"
    assert_refused(await production_client.gql(query), "repeats")


async def test_field_duplication_through_fragments_is_refused(
    production_client: GraphQLClient,
) -> None:
    query = "{ ...A ...B ...C } " + " ".join(
        f"fragment {name} on Query {{ {'__typename ' * 8}}}" for name in "ABC"
    )
    assert_refused(await production_client.gql(query), "repeats")


async def test_deep_query_is_refused(production_client: GraphQLClient) -> None:
    hop = "categories(first: 1) { edges { node { owner { %s } } } }"
    query = "{ me { " + hop % (hop % (hop % "id")) + " } }"
    assert_refused(await production_client.gql(query), "deeply")


async def test_depth_is_counted_through_fragments(production_client: GraphQLClient) -> None:
    query = (
        "{ me { ...A } } "
        "fragment A on User { categories(first: 1) { edges { node { owner { ...B } } } } } "
        "fragment B on User { categories(first: 1) { edges { node { owner { ...C } } } } } "
        "fragment C on User { categories(first: 1) { edges { node { owner { id } } } } }"
    )
    assert_refused(await production_client.gql(query), "deeply")


@pytest.mark.parametrize(
    "query",
    [
        "{ ...A } fragment A on Query { ...A }",
        "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
        "{ me { ...U } } fragment U on User { categories { edges { node { owner { ...U } } } } }",
        "{ ...A } fragment A on Query { a: __typename ...B ...B } fragment B on Query { ...A }",
    ],
    ids=["self", "pair", "through-fields", "through-aliases"],
)
async def test_circular_fragments_are_refused(production_client: GraphQLClient, query: str) -> None:
    started = time.perf_counter()
    body = await production_client.gql(query)
    assert time.perf_counter() - started < HOSTILE_BOUND_SECONDS
    assert_refused(body)
    assert_no_internals(str(body))


async def test_exponential_fragment_spreads_are_refused_fast(
    production_client: GraphQLClient,
) -> None:
    # 2**180 leaves in 2 KiB: Strawberry's own limiters walk every path and never return.
    for leaf in ("__typename", "a: __typename", "__typename @skip(if: false)"):
        started = time.perf_counter()
        body = await production_client.gql(doubling_fragments(180, leaf))
        assert time.perf_counter() - started < HOSTILE_BOUND_SECONDS
        assert_refused(body)


async def test_comment_padding_counts_toward_the_token_limit(
    production_client: GraphQLClient,
) -> None:
    body = await production_client.gql("#\n" * 2500 + "{ __typename }")
    assert_refused(body, "tokens")


async def test_unknown_fragment_is_a_validation_error_not_a_crash(
    production_client: GraphQLClient,
) -> None:
    assert_refused(await production_client.gql("{ ...Missing }"), "Unknown fragment")


# --- cost -----------------------------------------------------------------------


CONNECTIONS = """query($a: Int, $b: Int) {
  users(first: $a) { edges { node { categories(first: $b) { edges { node { id name } } } } } }
}"""


async def test_nested_pages_over_the_cost_budget_are_refused(user: GraphQLClient) -> None:
    literal = (
        "{ users(first: 100) { edges { node { "
        "categories(first: 100) { edges { node { id name } } } } } } }"
    )
    assert_refused(await user.gql(literal), "expensive")
    assert_refused(await user.gql(CONNECTIONS, {"a": 100, "b": 100}), "expensive")


async def test_default_page_sizes_count_toward_the_cost(user: GraphQLClient) -> None:
    # 20 users x 20 categories x 20 users x 20 categories: no `first` anywhere.
    query = (
        "{ users { edges { node { categories { edges { node { owner { "
        "categories { edges { node { id } } } } } } } } } } }"
    )
    assert_refused(await user.gql(query), "expensive")


async def test_small_pages_from_variables_stay_within_the_budget(user: GraphQLClient) -> None:
    body = await user.gql(CONNECTIONS, {"a": 5, "b": 5})
    assert "errors" not in body, body
    # The same text, now with large variables: the verdict is per request, not cached.
    assert_refused(await user.gql(CONNECTIONS, {"a": 100, "b": 100}), "expensive")


async def test_a_float_page_size_is_costed_as_the_int_it_becomes(user: GraphQLClient) -> None:
    # GraphQL coerces 100.0 to the Int 100: the cost must count 100, not the default 20.
    query = """query($f: Int) { users(first: $f) { edges { node {
      categories(first: $f) { edges { node { id } } } } } } }"""
    assert_refused(await user.gql(query, {"f": 100.0}), "expensive")
    assert "errors" not in await user.gql(query, {"f": 5.0})


@pytest.mark.parametrize("given", [{}, None], ids=["omitted", "no-variables"])
async def test_a_variable_default_used_inside_a_fragment_is_costed(
    user: GraphQLClient, given: dict[str, Any] | None
) -> None:
    # 30 users x 100 categories: the fragment's page is the operation's default, 100.
    query = """query($f: Int = 100) { users(first: 30) { ...U } }
    fragment U on UserConnection { edges { node {
      categories(first: $f) { edges { node { id } } } } } }"""
    assert_refused(await user.gql(query, given), "expensive")


async def test_three_aliases_of_nested_pages_cannot_bypass_the_budget(user: GraphQLClient) -> None:
    query = """query($f: Int = 100) { a: users(first: 16) { ...U } b: users(first: 16) { ...U }
      c: users(first: 16) { ...U } }
    fragment U on UserConnection { edges { node {
      categories(first: $f) { edges { node { id name } } } } } }"""
    for variables in ({}, {"f": 100.0}):
        assert_refused(await user.gql(query, variables), "expensive")


# --- the compiled plans: bounded work ------------------------------------------------


def fragment_bomb(levels: int, copies: int = 20) -> str:
    """The red team's ~1 KiB request: every level spreads the next fragment ``copies``
    times (``me { ...F0 x20 }``, ``F0`` = ``categories(first: 0) { ...F1 x20 }``, ...).
    ``first: 0`` makes its cost nothing, so it passes every limit."""
    chain = [
        ("User", "categories(first: 0)"),
        ("CategoryConnection", "edges"),
        ("CategoryEdge", "node"),
        ("Category", "owner"),
    ]
    fragments = []
    for level in range(levels):
        on, field = chain[level % len(chain)]
        inner = f" ...F{level + 1}" * copies if level + 1 < levels else " __typename"
        fragments.append(f"fragment F{level} on {on} {{ {field} {{{inner} }} }}")
    return "{ me {" + " ...F0" * copies + " } }\n" + "\n".join(fragments)


@pytest.mark.parametrize("with_token", [False, True], ids=["anonymous", "signed-in"])
async def test_the_fragment_bomb_is_answered_fast_every_time(
    production_client: GraphQLClient, user: GraphQLClient, with_token: bool
) -> None:
    bomb = fragment_bomb(6)
    assert len(bomb) < 1500
    client = user if with_token else production_client
    for attempt in range(3):
        started = time.perf_counter()
        body = await client.gql(bomb)
        elapsed = time.perf_counter() - started
        assert elapsed < 1.0, f"attempt {attempt}: {elapsed:.2f}s"
        if with_token:
            assert body["data"]["me"]["categories"]["edges"] == [], body
        else:
            assert error_codes(body) == ["UNAUTHENTICATED"], body


async def test_the_fragment_bomb_does_not_delay_other_users(
    user: GraphQLClient, other_user: GraphQLClient
) -> None:
    import asyncio

    bomb = fragment_bomb(6)

    async def timed(client: GraphQLClient, query: str) -> float:
        started = time.perf_counter()
        await client.gql(query)
        return time.perf_counter() - started

    bombs = [timed(user, bomb) for _ in range(4)]
    other = timed(other_user, "{ me { id name } }")
    *bomb_times, other_time = await asyncio.gather(*bombs, other)
    assert max(bomb_times) < 2.0 and other_time < 2.0, (bomb_times, other_time)


# --- size -----------------------------------------------------------------------


VALID_HOSTILE = {"comments": {"__typename": "Query"}, "long-string": {"user": None}}


def hostile_documents(size: int) -> dict[str, str]:
    return {
        # Each line is one byte longer in JSON ("\n").
        "comments": ("#" + "x" * 78 + "\n") * (size // 82) + "{ __typename }",
        "short-comments": "#\n" * (size // 4) + "{ __typename }",
        "long-string": '{ user(id: "' + "9" * (size - 40) + '") { id } }',
        "long-name": "{ " + "a" * (size - 10) + " }",
        "many-tokens": "{ " + "a " * (size // 2 - 4) + "}",
        "nesting": "{ me " * (size // 6),
        "doubling": doubling_fragments(180),
        "big-int": "{ users(first: " + "9" * (size - 60) + ") { edges { cursor } } }",
    }


@pytest.mark.parametrize("kind", list(hostile_documents(1024)))
async def test_hostile_document_of_the_maximum_body_size_is_answered_fast(
    user: GraphQLClient, kind: str
) -> None:
    # Just under the 64 KiB body cap once wrapped in JSON.
    query = hostile_documents(64 * 1024 - 200)[kind]
    started = time.perf_counter()
    response = await user.post(query)
    elapsed = time.perf_counter() - started
    assert elapsed < HOSTILE_BOUND_SECONDS, f"{kind}: {elapsed:.2f}s"
    assert response.status_code == 200, response.text
    body = response.json()
    if kind in VALID_HOSTILE:
        # Valid queries (800 comments are within the token limit; the id names no row).
        assert body == {"data": VALID_HOSTILE[kind]}, body
    else:
        assert_refused(body)
    assert_no_internals(response.text)
