"""The service answers: health, readiness, a signed-in user, JWKS."""

from __future__ import annotations

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
