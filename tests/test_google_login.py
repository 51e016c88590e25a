"""googleLogin: the real google-auth path against the fake issuer, and every way to fail it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from graphql_api.container import Container
from graphql_api.db.models import User
from tests.conftest import LOGIN, GraphQLClient, error_codes
from tests.fake_google import CLIENT_ID, FakeGoogle, SigningKey

pytestmark = pytest.mark.both_databases


async def login(client: GraphQLClient, token: str, nonce: str | None = None) -> dict[str, Any]:
    return await client.gql(LOGIN, {"idToken": token, "nonce": nonce})


async def user_count(container: Container) -> int:
    async with container.db.reader() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def test_valid_id_token_signs_in_and_returns_tokens(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    body = await login(anonymous, fake_google.mint(sub="s1", email="Ann@Example.com", name="Ann"))
    payload = body["data"]["googleLogin"]
    assert payload["tokenType"] == "Bearer"
    assert payload["expiresIn"] == 900
    assert payload["refreshToken"].startswith("rt_")
    assert payload["user"]["email"] == "ann@example.com"
    assert payload["user"]["name"] == "Ann"
    anonymous.token = payload["accessToken"]
    me = await anonymous.data("{ me { id email } }")
    assert me["me"]["id"] == payload["user"]["id"]


async def test_pem_certificate_endpoint_is_accepted_too(
    app_client: Any, fake_google: FakeGoogle
) -> None:
    client = await app_client(google_certs_url=fake_google.pem_url)
    body = await login(client, fake_google.mint(sub="pem-user"))
    assert "errors" not in body, body


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"aud": "someone-else.apps.googleusercontent.com"}, id="foreign-aud"),
        pytest.param({"iss": "https://evil.example.com"}, id="wrong-iss"),
        pytest.param({"iss": "accounts.google.com.evil.com"}, id="iss-containing-google"),
        pytest.param({"exp": int(time.time()) - 60, "iat": int(time.time()) - 3660}, id="expired"),
        pytest.param({"email_verified": False}, id="email-not-verified"),
        pytest.param({"email_verified": "true"}, id="email-verified-as-string"),
        pytest.param({"kid": "unknown-kid"}, id="unknown-kid"),
    ],
)
async def test_invalid_google_token_is_unauthenticated_and_creates_nobody(
    anonymous: GraphQLClient, fake_google: FakeGoogle, container: Container, claims: dict[str, Any]
) -> None:
    body = await login(anonymous, fake_google.mint(sub="bad", **claims))
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert body["data"] is None
    assert await user_count(container) == 0


async def test_token_signed_by_another_key_with_a_known_kid_is_refused(
    anonymous: GraphQLClient, fake_google: FakeGoogle, container: Container
) -> None:
    forged = fake_google.mint(sub="forged", signing_key=SigningKey(), kid=fake_google.key.kid)
    body = await login(anonymous, forged)
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert await user_count(container) == 0


async def test_missing_audience_configuration_refuses_every_token(
    app_client: Any, fake_google: FakeGoogle
) -> None:
    client = await app_client(google_client_ids=[])
    body = await login(client, fake_google.mint(sub="x"))
    assert error_codes(body) == ["UNAUTHENTICATED"]


async def test_id_token_is_accepted_only_once(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    token = fake_google.mint(sub="once")
    assert "errors" not in await login(anonymous, token)
    replay = await login(anonymous, token)
    assert error_codes(replay) == ["UNAUTHENTICATED"]


async def test_same_email_with_a_different_sub_is_a_different_user(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    first = await login(anonymous, fake_google.mint(sub="sub-a", email="same@example.com"))
    second = await login(anonymous, fake_google.mint(sub="sub-b", email="same@example.com"))
    first_id = first["data"]["googleLogin"]["user"]["id"]
    second_id = second["data"]["googleLogin"]["user"]["id"]
    assert first_id != second_id


async def test_profile_is_refreshed_on_each_login_and_user_found_by_sub(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    first = await login(anonymous, fake_google.mint(sub="s", email="old@example.com", name="Old"))
    second = await login(anonymous, fake_google.mint(sub="s", email="new@example.com", name="New"))
    assert first["data"]["googleLogin"]["user"]["id"] == second["data"]["googleLogin"]["user"]["id"]
    assert second["data"]["googleLogin"]["user"]["name"] == "New"
    assert second["data"]["googleLogin"]["user"]["email"] == "new@example.com"


async def test_admin_email_gets_the_admin_role(admin: GraphQLClient) -> None:
    assert (await admin.data("{ me { role } }"))["me"]["role"] == "ADMIN"


async def test_nonce_is_checked_when_given(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    wrong = await login(anonymous, fake_google.mint(sub="n", nonce="abc"), nonce="xyz")
    assert error_codes(wrong) == ["UNAUTHENTICATED"]
    missing = await login(anonymous, fake_google.mint(sub="n"), nonce="xyz")
    assert error_codes(missing) == ["UNAUTHENTICATED"]
    right = await login(anonymous, fake_google.mint(sub="n", nonce="xyz"), nonce="xyz")
    assert "errors" not in right


async def test_hosted_domain_allowlist_is_enforced(
    app_client: Any, fake_google: FakeGoogle
) -> None:
    anonymous = await app_client(google_hosted_domains=["corp.example.com"])
    outsider = await login(anonymous, fake_google.mint(sub="o", email="o@gmail.com"))
    assert error_codes(outsider) == ["UNAUTHENTICATED"]
    spoofed = await login(anonymous, fake_google.mint(sub="p", hd="corp.example.com.evil"))
    assert error_codes(spoofed) == ["UNAUTHENTICATED"]
    member = await login(anonymous, fake_google.mint(sub="m", hd="corp.example.com"))
    assert "errors" not in member


async def test_error_message_does_not_leak_library_text(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    body = await login(anonymous, "not-a-jwt")
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert body["errors"][0]["message"] == "Google sign-in failed."


def test_fake_issuer_uses_the_test_client_id() -> None:
    assert CLIENT_ID.endswith(".apps.googleusercontent.com")
