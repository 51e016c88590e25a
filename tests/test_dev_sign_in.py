"""POST /dev/sign-in: a development user without Google, for exploring; absent in production.

It answers as ``googleLogin`` does (the same payload; the refresh token in an HttpOnly
cookie when the request asks for cookie transport) and refuses cross-site requests as
/graphql does: JSON bodies only, and a foreign Origin is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_EMAIL, GraphQLClient

PATH = "/dev/sign-in"
COOKIE = {"x-refresh-token-transport": "cookie"}
SAME_ORIGIN = {"origin": "http://testserver"}


async def test_signs_the_development_user_in_with_a_refresh_cookie(
    anonymous: GraphQLClient,
) -> None:
    response = await anonymous.http.post(PATH, json={}, headers={**COOKIE, **SAME_ORIGIN})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    payload = response.json()
    assert payload["tokenType"] == "Bearer"
    assert payload["refreshToken"] is None
    assert payload["expiresIn"] > 0
    assert payload["user"] == {
        "id": payload["user"]["id"],
        "name": "developer",
        "email": "developer@example.com",
        "role": "USER",
        "pictureUrl": None,
    }
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("graphql_api_refresh=")
    assert "HttpOnly" in cookie and "Path=/graphql" in cookie and "SameSite=strict" in cookie

    # The access token is an ordinary one, and the cookie refreshes like googleLogin's.
    signed_in = GraphQLClient(anonymous.http, token=payload["accessToken"])
    assert (await signed_in.data("{ me { id email } }"))["me"] == {
        "id": payload["user"]["id"],
        "email": "developer@example.com",
    }
    refreshed = await anonymous.data("mutation { refreshToken { user { email } } }")
    assert refreshed["refreshToken"]["user"]["email"] == "developer@example.com"


async def test_without_cookie_transport_the_refresh_token_is_in_the_body(
    anonymous: GraphQLClient,
) -> None:
    response = await anonymous.http.post(PATH, json={"email": ADMIN_EMAIL})
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["refreshToken"]
    assert "set-cookie" not in response.headers
    # A named email is that user; ADMIN_EMAILS apply as at a Google sign-in.
    assert payload["user"]["email"] == ADMIN_EMAIL
    assert payload["user"]["role"] == "ADMIN"


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
)
async def test_a_body_a_form_could_send_is_refused(
    anonymous: GraphQLClient, content_type: str
) -> None:
    response = await anonymous.http.post(
        PATH, content=b"{}", headers={"content-type": content_type, **COOKIE}
    )
    assert response.status_code == 415
    assert "set-cookie" not in response.headers


async def test_a_foreign_origin_is_refused(anonymous: GraphQLClient) -> None:
    response = await anonymous.http.post(
        PATH, json={}, headers={"origin": "https://evil.example", **COOKIE}
    )
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("body", [[], "x", {"email": 1}, {"email": "not an address"}])
async def test_a_bad_body_is_refused(anonymous: GraphQLClient, body: Any) -> None:
    response = await anonymous.http.post(PATH, json=body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_the_reference_page_is_told_it_may_offer_it(anonymous: GraphQLClient) -> None:
    config = await anonymous.http.get("/client-config.json")
    assert config.json()["devSignIn"] is True


async def test_production_has_no_such_route(app_client: Any, keys_file: Path) -> None:
    production: GraphQLClient = await app_client(
        env="production", jwt_keys_file=keys_file, trusted_documents="off"
    )
    for headers in ({}, {**COOKIE, **SAME_ORIGIN}):
        response = await production.http.post(PATH, json={}, headers=headers)
        assert response.status_code == 404
        assert "set-cookie" not in response.headers
    # Nor a page or a configuration that would offer it.
    assert (await production.http.get("/client-config.json")).status_code == 404
