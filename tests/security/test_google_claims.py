"""What Google signs is input too: no claim's length or content may break a valid sign-in,
and the profile it carries obeys the same rules as a profile edited through the API."""

from __future__ import annotations

from typing import Any

from tests.conftest import GraphQLClient, error_codes
from tests.fake_google import FakeGoogle

LOGIN = """
mutation($idToken: String!, $nonce: String) {
  googleLogin(idToken: $idToken, nonce: $nonce) { user { id name email pictureUrl } }
}
"""


async def login(client: GraphQLClient, token: str, nonce: str | None = None) -> dict[str, Any]:
    return await client.gql(LOGIN, {"idToken": token, "nonce": nonce})


def signed_in_user(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body
    user: dict[str, Any] = body["data"]["googleLogin"]["user"]
    return user


async def test_a_token_without_jti_and_a_long_nonce_signs_in_once(
    production_client: GraphQLClient, fake_google: FakeGoogle
) -> None:
    # Without a jti the one-time-use key is built from the nonce, which the client chose
    # (and need not send back: the nonce argument is optional, and capped where it is sent).
    token = fake_google.mint(sub="long-nonce", remove=("jti",), nonce="n" * 5000)
    signed_in_user(await login(production_client, token))
    assert error_codes(await login(production_client, token)) == ["UNAUTHENTICATED"]


async def test_a_token_with_a_long_jti_signs_in_once(
    production_client: GraphQLClient, fake_google: FakeGoogle
) -> None:
    token = fake_google.mint(sub="long-jti", jti="j" * 2000)
    signed_in_user(await login(production_client, token))
    assert error_codes(await login(production_client, token)) == ["UNAUTHENTICATED"]
