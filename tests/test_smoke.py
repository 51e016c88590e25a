"""The service answers: health, readiness, a signed-in user, JWKS."""

from __future__ import annotations

from typing import Any

from tests.conftest import GraphQLClient


async def test_healthz_and_readyz_answer_200(anonymous: GraphQLClient) -> None:
    assert (await anonymous.http.get("/healthz")).status_code == 200
    ready = await anonymous.http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok"}


async def test_signed_in_user_sees_their_own_profile(user: GraphQLClient) -> None:
    data = await user.data("{ me { id name email role } }")
    assert data["me"] == {
        "id": user.user_id,
        "name": "Test User",
        "email": "user@example.com",
        "role": "USER",
    }


async def test_readyz_is_503_while_the_database_is_unreachable(app_client: Any) -> None:
    client: GraphQLClient = await app_client(
        database_url="postgresql+asyncpg://postgres@127.0.0.1:9/unreachable"
    )
    assert (await client.http.get("/healthz")).status_code == 200
    ready = await client.http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "reasons": ["database: does not answer"]}


async def test_a_token_cannot_be_checked_without_the_database_so_it_fails_closed(
    app_client: Any, container: Any
) -> None:
    client: GraphQLClient = await app_client(
        database_url="postgresql+asyncpg://postgres@127.0.0.1:9/unreachable"
    )
    client.token = container.codec.issue(user_id=1, session_id="s").token
    response = await client.post("{ __typename }")
    # Not run as anonymous: refused, and told to retry (the database is down).
    assert response.status_code == 503
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["SERVICE_UNAVAILABLE"]
