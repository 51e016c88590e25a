"""What a refused access token is told: which problem in development, nothing in production."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphql_api.auth.keys import generate_key_file, load_key_set
from graphql_api.auth.tokens import AccessTokenCodec
from tests.conftest import AppClient, FakeClock, GraphQLClient, error_codes

ME = "{ me { id } }"


async def refusal(client: GraphQLClient, token: str) -> tuple[list[str], str]:
    body = await client.gql(ME, headers={"authorization": f"Bearer {token}"})
    return error_codes(body), body["errors"][0]["message"]


async def test_development_says_why_a_token_is_refused(
    user: GraphQLClient, anonymous: GraphQLClient, clock: FakeClock, tmp_path: Path
) -> None:
    assert user.token is not None
    codes, message = await refusal(anonymous, "not-a-jwt")
    assert codes == ["UNAUTHENTICATED"] and "well-formed" in message

    other_keys = tmp_path / "other.json"
    generate_key_file(other_keys)
    foreign = (
        AccessTokenCodec(
            keys=load_key_set(other_keys),
            issuer="graphql-api",
            audience="graphql-api",
            ttl=900,
            leeway=5,
            clock=clock,
        )
        .issue(user_id=1, session_id="s")
        .token
    )
    codes, message = await refusal(anonymous, foreign)
    assert codes == ["UNAUTHENTICATED"] and "key this service does not know" in message

    await user.data("mutation { logout }")
    codes, message = await refusal(anonymous, user.token)
    assert codes == ["UNAUTHENTICATED"] and "ended" in message

    clock.advance(3600)
    codes, message = await refusal(anonymous, user.token)
    assert codes == ["UNAUTHENTICATED"] and "expired" in message


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c"])
async def test_production_says_only_authentication_required(
    app_client: AppClient, keys_file: Path, token: str
) -> None:
    client = await app_client(env="production", jwt_keys_file=keys_file, trusted_documents="off")
    codes, message = await refusal(client, token)
    assert codes == ["UNAUTHENTICATED"] and message == "Authentication required."
