"""The HTTP layer: body cap, JSON only, no batching, headers, CORS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conftest import LOGIN, AppClient, GraphQLClient, error_codes
from tests.fake_google import FakeGoogle
from tests.security.conftest import assert_no_internals

JSON = {"content-type": "application/json"}


async def test_body_over_64_kib_is_refused_with_413(anonymous: GraphQLClient) -> None:
    body = b'{"query": "{ __typename }", "pad": "' + b"x" * (64 * 1024) + b'"}'
    response = await anonymous.http.post("/graphql", content=body, headers=JSON)
    assert response.status_code == 413


async def test_a_declared_length_over_the_cap_is_refused_before_the_body_arrives(
    anonymous: GraphQLClient,
) -> None:
    # A client that announces a gigabyte is answered at once: nothing waits for its body.
    async def slowly() -> AsyncIterator[bytes]:
        yield b'{"query": "{ __typename }", "pad": "'
        await asyncio.sleep(30)
        yield b'"}'

    headers = {**JSON, "content-length": str(10**9)}
    response = await asyncio.wait_for(
        anonymous.http.post("/graphql", content=slowly(), headers=headers), timeout=5
    )
    assert response.status_code == 413


async def test_body_cap_holds_without_a_content_length(anonymous: GraphQLClient) -> None:
    # A chunked upload declares no length: the cap is enforced while reading.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ __typename }", "pad": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    response = await anonymous.http.post("/graphql", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


async def test_lying_content_length_is_refused(anonymous: GraphQLClient) -> None:
    headers = {**JSON, "content-length": "not-a-number"}
    response = await anonymous.http.post("/graphql", content=b"{}", headers=headers)
    assert response.status_code in (400, 413)


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b"not json",
        b'{"query": "{ __typename }",}',
        b"\xff\xfe{}",
        b"[" * 5000 + b"]" * 5000,
        b'"{ __typename }"',
        b"42",
        b"null",
        b"",
        b'{"query": 5}',
        b'{"query": "{ __typename }", "variables": [1]}',
        b'{"query": "{ __typename }", "operationName": 7}',
    ],
    ids=[
        "truncated",
        "text",
        "trailing-comma",
        "bad-utf8",
        "deep-nesting",
        "json-string",
        "json-number",
        "json-null",
        "empty",
        "query-not-string",
        "variables-not-object",
        "operation-name-not-string",
    ],
)
async def test_malformed_requests_get_400_never_500(
    anonymous: GraphQLClient, content: bytes
) -> None:
    response = await anonymous.http.post("/graphql", content=content, headers=JSON)
    assert response.status_code == 400, response.text
    assert_no_internals(response.text)


async def test_json_array_bodies_are_refused(anonymous: GraphQLClient) -> None:
    response = await anonymous.http.post("/graphql", json=[{"query": "{ __typename }"}])
    assert response.status_code == 400


async def test_unknown_operation_name_is_a_client_error(anonymous: GraphQLClient) -> None:
    response = await anonymous.http.post(
        "/graphql", json={"query": "query A { __typename }", "operationName": "B"}
    )
    assert 400 <= response.status_code < 500 or "errors" in response.json()
    assert_no_internals(response.text)


async def test_several_operations_without_operation_name_run_none(user: GraphQLClient) -> None:
    document = "mutation Out { logout } query Me { me { id } }"
    bearer = {"authorization": f"Bearer {user.token}"}
    response = await user.http.post("/graphql", json={"query": document}, headers=bearer)
    body = response.json()
    assert body.get("data") is None
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert "operationName" in body["errors"][0]["message"]
    # Nothing ran: the session is still alive, and naming an operation runs just that one.
    chosen = {"query": document, "operationName": "Me"}
    response = await user.http.post("/graphql", json=chosen, headers=bearer)
    assert response.json() == {"data": {"me": {"id": user.user_id}}}


@pytest.mark.parametrize("path", ["/graphql", "/healthz", "/.well-known/jwks.json", "/nowhere"])
async def test_security_headers_on_every_response(anonymous: GraphQLClient, path: str) -> None:
    if path == "/graphql":
        response = await anonymous.http.post(path, json={"query": "{ __typename }"})
    else:
        response = await anonymous.http.get(path)
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


async def test_token_responses_are_not_cached(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    response = await anonymous.post(
        LOGIN, {"idToken": fake_google.mint(sub="sub-cache", email="cache@example.com")}
    )
    assert response.json()["data"]["googleLogin"]["accessToken"]
    assert response.headers["cache-control"] == "no-store"


async def test_cors_is_off_without_configured_origins(anonymous: GraphQLClient) -> None:
    response = await anonymous.http.options(
        "/graphql",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers


async def test_cors_answers_only_the_configured_origins(app_client: AppClient) -> None:
    client = await app_client(cors_origins=["https://app.example"])
    for origin, allowed in (
        ("https://app.example", True),
        ("https://evil.example", False),
        ("https://app.example.evil.example", False),
        ("null", False),
    ):
        preflight = await client.http.options(
            "/graphql",
            headers={"origin": origin, "access-control-request-method": "POST"},
        )
        response = await client.http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"origin": origin}
        )
        got = response.headers.get("access-control-allow-origin")
        assert (got == origin) is allowed, (origin, got)
        assert (preflight.headers.get("access-control-allow-origin") == origin) is allowed
        assert got != "*"


async def test_get_is_never_executed_and_has_no_graphiql_in_production(
    production_client: GraphQLClient,
) -> None:
    for params in ({}, {"query": "{ __typename }"}):
        response = await production_client.http.get("/graphql", params=params)
        assert response.status_code == 405
        assert "data" not in response.json()
