"""Cookie mode: the refresh token travels in an HttpOnly cookie that page scripts never see.

A request with ``X-Refresh-Token-Transport: cookie`` gets the refresh token in the
``graphql_api_refresh`` cookie (HttpOnly, SameSite=Strict, Path=/graphql, Secure outside
development) and ``refreshToken: null``; ``refreshToken`` without an argument reads the
cookie; ``logout``/``logoutAll`` clear it; a cookie refresh is honoured only as a JSON POST
from the service's own origin or one in CORS_ORIGINS.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest

from graphql_api.web.graphql_endpoint import REFRESH_COOKIE
from tests.conftest import LOGIN, GraphQLClient, error_codes
from tests.fake_google import FakeGoogle

COOKIE_MODE = {"x-refresh-token-transport": "cookie"}
REFRESH = """
mutation Refresh($refreshToken: String) {
  refreshToken(refreshToken: $refreshToken) { accessToken refreshToken expiresIn user { id } }
}
"""
OWN_ORIGIN = "http://testserver"
FRONTEND_ORIGIN = "https://app.example.com"


def refresh_cookie(response: httpx.Response) -> Any:
    """The refresh cookie's Set-Cookie morsel on ``response``, or None."""
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if REFRESH_COOKIE in jar:
            return jar[REFRESH_COOKIE]
    return None


async def cookie_login(client: GraphQLClient, google: FakeGoogle, sub: str) -> httpx.Response:
    token = google.mint(sub=sub, email=f"{sub}@example.com")
    response = await client.post(LOGIN, {"idToken": token}, headers=COOKIE_MODE)
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    client.token = response.json()["data"]["googleLogin"]["accessToken"]
    return response


async def cookie_refresh(
    client: GraphQLClient, origin: str | None = OWN_ORIGIN, *, transport: bool = True
) -> httpx.Response:
    headers = dict(COOKIE_MODE) if transport else {}
    if origin is not None:
        headers["origin"] = origin
    response = await client.http.post("/graphql", json={"query": REFRESH}, headers=headers)
    assert response.status_code == 200, response.text
    return response


def jar_value(client: GraphQLClient) -> str | None:
    """The refresh cookie the client (like a browser) holds and would send to /graphql."""
    for cookie in client.http.cookies.jar:
        if cookie.name == REFRESH_COOKIE and cookie.path == "/graphql":
            return cookie.value
    return None


async def test_cookie_mode_login_sets_an_httponly_strict_cookie_and_returns_no_refresh_token(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    response = await cookie_login(anonymous, fake_google, "cookie-login")

    payload = response.json()["data"]["googleLogin"]
    assert payload["refreshToken"] is None
    assert payload["accessToken"]
    cookie = refresh_cookie(response)
    assert cookie is not None and cookie.value.startswith("rt_")
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "strict"
    assert cookie["path"] == "/graphql"
    assert int(cookie["max-age"]) == 30 * 86400
    # Plain-http localhost in development: a Secure cookie would never come back.
    assert not cookie["secure"]


async def test_login_without_the_header_returns_the_refresh_token_in_the_body_and_no_cookie(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    body = await anonymous.post(LOGIN, {"idToken": fake_google.mint(sub="body-mode")})
    assert body.json()["data"]["googleLogin"]["refreshToken"].startswith("rt_")
    assert refresh_cookie(body) is None


class TestInProduction:
    @pytest.fixture
    async def production(self, app_client: Any, keys_file: Path) -> GraphQLClient:
        client: GraphQLClient = await app_client(
            env="production", jwt_keys_file=keys_file, trusted_documents="off"
        )
        return client

    async def test_the_cookie_is_secure(
        self, production: GraphQLClient, fake_google: FakeGoogle
    ) -> None:
        response = await cookie_login(production, fake_google, "prod-cookie")
        cookie = refresh_cookie(response)
        assert cookie["secure"] is True
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "strict"
        assert cookie["path"] == "/graphql"
        assert response.json()["data"]["googleLogin"]["refreshToken"] is None

    async def test_logout_clears_the_secure_cookie(
        self, production: GraphQLClient, fake_google: FakeGoogle
    ) -> None:
        await cookie_login(production, fake_google, "prod-logout")
        response = await production.post("mutation { logout }")
        cleared = refresh_cookie(response)
        assert cleared["secure"] is True and cleared.value == ""
        assert int(cleared["max-age"]) == 0


async def test_refresh_without_argument_reads_the_cookie_and_rotates_it(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    login = await cookie_login(anonymous, fake_google, "rotate")
    first = refresh_cookie(login).value
    assert jar_value(anonymous) == first

    response = await cookie_refresh(anonymous)

    body = response.json()
    assert "errors" not in body, body
    payload = body["data"]["refreshToken"]
    assert payload["refreshToken"] is None
    assert payload["user"]["id"] == login.json()["data"]["googleLogin"]["user"]["id"]
    rotated = refresh_cookie(response)
    assert rotated is not None and rotated.value.startswith("rt_") and rotated.value != first
    assert rotated["httponly"] is True and rotated["samesite"] == "strict"
    assert jar_value(anonymous) == rotated.value
    anonymous.token = payload["accessToken"]
    assert "errors" not in await anonymous.gql("{ me { id } }")
    # The rotated cookie keeps working: the next refresh succeeds too.
    assert "errors" not in (await cookie_refresh(anonymous)).json()


async def test_the_replaced_cookie_value_is_dead_after_rotation(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    first = refresh_cookie(await cookie_login(anonymous, fake_google, "dead-cookie")).value
    await cookie_refresh(anonymous)

    stale = await anonymous.http.post(
        "/graphql",
        json={"query": REFRESH},
        headers={**COOKIE_MODE, "cookie": f"{REFRESH_COOKIE}={first}", "origin": OWN_ORIGIN},
    )
    assert error_codes(stale.json()) == ["UNAUTHENTICATED"]


async def test_a_cookie_refresh_without_the_header_still_answers_in_the_cookie(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    # The rotated token must replace the cookie: returning it in the body would hand it to
    # page scripts and leave a dead cookie whose next use looks like a stolen token.
    await cookie_login(anonymous, fake_google, "headerless")
    response = await cookie_refresh(anonymous, transport=False)
    body = response.json()
    assert "errors" not in body, body
    assert body["data"]["refreshToken"]["refreshToken"] is None
    assert refresh_cookie(response).value == jar_value(anonymous)
    assert "errors" not in (await cookie_refresh(anonymous)).json()


async def test_refresh_without_argument_and_without_cookie_is_unauthenticated(
    anonymous: GraphQLClient,
) -> None:
    response = await cookie_refresh(anonymous)
    assert error_codes(response.json()) == ["UNAUTHENTICATED"]
    assert refresh_cookie(response) is None


@pytest.mark.parametrize("mutation", ["logout", "logoutAll"])
async def test_logout_and_logout_all_clear_the_cookie(
    anonymous: GraphQLClient, fake_google: FakeGoogle, mutation: str
) -> None:
    await cookie_login(anonymous, fake_google, f"clear-{mutation}")
    assert jar_value(anonymous) is not None

    response = await anonymous.post(f"mutation {{ {mutation} }}")

    assert "errors" not in response.json(), response.text
    cleared = refresh_cookie(response)
    assert cleared is not None and cleared.value == ""
    assert int(cleared["max-age"]) == 0
    assert cleared["path"] == "/graphql" and cleared["httponly"] is True
    assert jar_value(anonymous) is None
    after = await cookie_refresh(anonymous)
    assert error_codes(after.json()) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(
    "origin", ["https://evil.example.com", "http://testserver.evil.com", "null"]
)
async def test_cookie_refresh_from_a_foreign_origin_is_refused(
    anonymous: GraphQLClient, fake_google: FakeGoogle, origin: str
) -> None:
    await cookie_login(anonymous, fake_google, "foreign")
    before = jar_value(anonymous)

    response = await cookie_refresh(anonymous, origin)

    assert error_codes(response.json()) == ["FORBIDDEN"]
    assert response.json()["data"] is None
    assert refresh_cookie(response) is None
    # Refused before rotation: the cookie is still the live one.
    assert jar_value(anonymous) == before
    assert "errors" not in (await cookie_refresh(anonymous)).json()


async def test_cookie_refresh_from_the_services_own_origin_is_accepted(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    await cookie_login(anonymous, fake_google, "own-origin")
    response = await cookie_refresh(anonymous, OWN_ORIGIN)
    assert "errors" not in response.json(), response.text
    assert refresh_cookie(response) is not None


async def test_cookie_refresh_from_an_origin_in_cors_origins_is_accepted(
    app_client: Any, fake_google: FakeGoogle
) -> None:
    client: GraphQLClient = await app_client(cors_origins=[FRONTEND_ORIGIN])
    await cookie_login(client, fake_google, "cors-origin")

    response = await cookie_refresh(client, FRONTEND_ORIGIN)

    assert "errors" not in response.json(), response.text
    assert refresh_cookie(response) is not None
    assert response.headers["access-control-allow-origin"] == FRONTEND_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    refused = await cookie_refresh(client, "https://other.example.com")
    assert error_codes(refused.json()) == ["FORBIDDEN"]


async def test_an_explicit_refresh_token_argument_needs_no_trusted_origin(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    # The origin check guards the ambient credential (the cookie), not a token the caller holds.
    body = await anonymous.gql(LOGIN, {"idToken": fake_google.mint(sub="explicit")})
    token = body["data"]["googleLogin"]["refreshToken"]
    response = await anonymous.http.post(
        "/graphql",
        json={"query": REFRESH, "variables": {"refreshToken": token}},
        headers={"origin": "https://elsewhere.example.com"},
    )
    assert "errors" not in response.json(), response.text


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param(
            "application/x-www-form-urlencoded",
            "query=mutation+%7B+refreshToken+%7B+accessToken+%7D+%7D",
            id="form",
        ),
        pytest.param(
            "text/plain", '{"query": "mutation { refreshToken { accessToken } }"}', id="text"
        ),
        pytest.param(
            "multipart/form-data; boundary=x",
            '--x\r\nContent-Disposition: form-data; name="query"\r\n\r\n'
            "mutation { refreshToken { accessToken } }\r\n--x--\r\n",
            id="multipart",
        ),
    ],
)
async def test_cookie_refresh_is_accepted_only_as_a_json_post(
    anonymous: GraphQLClient, fake_google: FakeGoogle, content_type: str, body: str
) -> None:
    await cookie_login(anonymous, fake_google, "json-only")
    before = jar_value(anonymous)

    response = await anonymous.http.post(
        "/graphql",
        content=body,
        headers={**COOKIE_MODE, "content-type": content_type, "origin": OWN_ORIGIN},
    )

    assert response.status_code == 415
    assert refresh_cookie(response) is None
    assert jar_value(anonymous) == before
    assert "errors" not in (await cookie_refresh(anonymous)).json()


async def test_cookie_refresh_over_get_is_refused(
    anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    await cookie_login(anonymous, fake_google, "no-get")
    response = await anonymous.http.get(
        "/graphql",
        params={"query": "mutation { refreshToken { accessToken } }"},
        headers=COOKIE_MODE,
    )
    assert response.status_code == 405
    assert refresh_cookie(response) is None
