"""What Google signs is input too: no claim's length or content may break a valid sign-in,
and the profile it carries obeys the same rules as a profile edited through the API."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphql_api.services.validation import clean_name, profile_name
from tests.conftest import GraphQLClient, error_codes
from tests.fake_google import FakeGoogle

pytestmark = pytest.mark.both_databases

LOGIN = """
mutation($idToken: String!, $nonce: String) {
  googleLogin(idToken: $idToken, nonce: $nonce) { user { id name email pictureUrl } }
}
"""
SIGN_IN = """
mutation($idToken: String!) {
  googleLogin(idToken: $idToken) { accessToken user { id name email pictureUrl } }
}
"""
KEEP_NAME = """
mutation($id: ID!, $name: String!) { updateUser(id: $id, input: {name: $name}) { name } }
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


async def sign_in_with(
    client: GraphQLClient, fake_google: FakeGoogle, **claims: Any
) -> dict[str, Any]:
    token = fake_google.mint(sub=f"profile-{secrets.token_hex(8)}", **claims)
    return await client.gql(SIGN_IN, {"idToken": token})


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        pytest.param("Ada\u202eLovelace", "AdaLovelace", id="bidi-override"),
        pytest.param("Ada\u200bLove\ufefflace", "AdaLovelace", id="zero-width"),
        pytest.param("Ada\x00Lovelace", "AdaLovelace", id="nul"),
        pytest.param("Ada\x07Love\x1blace\x7f", "AdaLovelace", id="controls"),
        pytest.param("Ada\ud800Lovelace", "AdaLovelace", id="lone-surrogate"),
        pytest.param("Ada\tLovelace", "Ada Lovelace", id="tab"),
        pytest.param("\r\n Ada\n\nLovelace \n", "Ada Lovelace", id="newlines"),
        pytest.param("Ada\u00a0\u2028\u3000Lovelace", "Ada Lovelace", id="unicode-spaces"),
        pytest.param("Ada \u200b Lovelace", "Ada Lovelace", id="spaces-meet"),
        pytest.param("x" * 99 + " yz", "x" * 99, id="cut-then-trimmed"),
        pytest.param("n" * 5000, "n" * 100, id="long"),
        # Joiners are part of real text, as in the name rule.
        pytest.param("Family 👨\u200d👩\u200d👧", "Family 👨\u200d👩\u200d👧", id="zwj"),
        pytest.param("می\u200cخواهم", "می\u200cخواهم", id="zwnj"),
    ],
)
async def test_google_names_are_cleaned_to_our_name_rule(
    production_client: GraphQLClient, fake_google: FakeGoogle, sent: str, stored: str
) -> None:
    body = await sign_in_with(production_client, fake_google, name=sent)
    user = signed_in_user(body)
    assert user["name"] == stored
    # What was stored is a name updateUser accepts as it is.
    production_client.token = body["data"]["googleLogin"]["accessToken"]
    kept = await production_client.gql(KEEP_NAME, {"id": user["id"], "name": stored})
    assert kept["data"] == {"updateUser": {"name": stored}}, kept


@pytest.mark.parametrize("sent", ["", "   ", "\x00\u200b\u202e\t", None, 42, ["Ada"]], ids=repr)
async def test_a_google_name_with_nothing_left_falls_back_to_the_email(
    production_client: GraphQLClient, fake_google: FakeGoogle, sent: object
) -> None:
    body = await sign_in_with(production_client, fake_google, name=sent, email="ada@example.com")
    assert signed_in_user(body)["name"] == "ada"


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        pytest.param("https://lh3.example.com/a.png", "https://lh3.example.com/a.png", id="https"),
        pytest.param("http://lh3.example.com/a.png", None, id="http"),
        pytest.param("javascript:alert(1)", None, id="javascript"),
        pytest.param("data:image/png;base64,AAAA", None, id="data"),
        pytest.param("https://user:pass@example.com/a.png", None, id="credentials"),
        pytest.param("https://example.com/a b.png", None, id="space"),
        pytest.param("https://example.com/a\x00.png", None, id="nul"),
        pytest.param("https://example.com/\ud800", None, id="lone-surrogate"),
        # Past the 2,048 of the column; a picture of 10,000 makes a token over the 8,192
        # that googleLogin reads at all (BAD_USER_INPUT before any verification).
        pytest.param("https://example.com/" + "a" * 5_000, None, id="5000-chars"),
        pytest.param(["https://example.com/a.png"], None, id="not-a-string"),
    ],
)
async def test_google_pictures_follow_our_picture_rule(
    production_client: GraphQLClient, fake_google: FakeGoogle, sent: object, stored: str | None
) -> None:
    body = await sign_in_with(production_client, fake_google, picture=sent)
    assert signed_in_user(body)["pictureUrl"] == stored


async def test_an_id_token_or_nonce_longer_than_google_sends_is_bad_user_input(
    production_client: GraphQLClient, fake_google: FakeGoogle
) -> None:
    # Refused before any verification, whatever the token holds.
    huge = fake_google.mint(sub="huge", picture="https://example.com/" + "a" * 10_000)
    assert error_codes(await login(production_client, huge)) == ["BAD_USER_INPUT"]
    token = fake_google.mint(sub="long-nonce-sent", nonce="n" * 513)
    assert error_codes(await login(production_client, token, "n" * 513)) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"sub": "sub\x00nul"}, id="nul-in-sub"),
        pytest.param({"email": "ada\x00@example.com"}, id="nul-in-email"),
        pytest.param({"email": "ada lovelace@example.com"}, id="space-in-email"),
        pytest.param({"email": "a" * 310 + "@example.com"}, id="email-over-320"),
        pytest.param({"email": "\u0130" * 300 + "@example.com"}, id="email-over-320-lowered"),
        pytest.param({"email": "no-at-sign"}, id="email-without-at"),
        pytest.param({"email": "@example.com"}, id="email-without-local-part"),
        pytest.param({"email": "ada@"}, id="email-without-domain"),
    ],
)
async def test_identities_no_google_account_has_are_refused_not_cut(
    production_client: GraphQLClient, fake_google: FakeGoogle, claims: dict[str, Any]
) -> None:
    # The identity decides who signs in (and who is an admin): never altered, only refused.
    token = fake_google.mint(**{"sub": f"odd-{secrets.token_hex(8)}", **claims})
    body = await production_client.gql(SIGN_IN, {"idToken": token})
    assert error_codes(body) == ["UNAUTHENTICATED"], body


async def test_a_nonce_claim_that_cannot_be_encoded_is_a_mismatch_not_a_crash(
    production_client: GraphQLClient, fake_google: FakeGoogle
) -> None:
    token = fake_google.mint(sub="odd-nonce", nonce="\ud800")
    assert error_codes(await login(production_client, token, "x")) == ["UNAUTHENTICATED"]


@given(st.text(st.characters(exclude_categories=())))  # surrogates included
def test_a_cleaned_profile_name_is_empty_or_passes_the_name_rule_unchanged(text: str) -> None:
    name = profile_name(text)
    assert name == "" or clean_name(name) == name
