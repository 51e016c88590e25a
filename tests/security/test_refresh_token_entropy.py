"""Refresh tokens cannot be guessed: each is 256 random bits, and no two are alike."""

from __future__ import annotations

import base64
import re

from graphql_api.auth.tokens import new_refresh_token
from tests.conftest import GraphQLClient

URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")
PREFIX = "rt_"


def random_bytes_of(token: str) -> bytes:
    assert token.startswith(PREFIX), token
    body = token[len(PREFIX) :]
    assert URL_SAFE.fullmatch(body), token
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def test_a_refresh_token_carries_at_least_256_random_bits() -> None:
    token = new_refresh_token()
    assert len(token) - len(PREFIX) >= 43, token  # 256 bits in URL-safe base64
    assert len(random_bytes_of(token)) >= 32, token


def test_a_thousand_refresh_tokens_are_all_different() -> None:
    tokens = {new_refresh_token() for _ in range(1000)}
    assert len(tokens) == 1000
    # Nor do they share a long common part (a counter or a timestamp dressed up).
    assert len({token[:12] for token in tokens}) == 1000


async def test_the_refresh_tokens_a_login_hands_out_are_those(
    user: GraphQLClient, other_user: GraphQLClient
) -> None:
    for client in (user, other_user):
        assert client.refresh is not None
        assert len(random_bytes_of(client.refresh)) >= 32, client.refresh
    assert user.refresh != other_user.refresh
