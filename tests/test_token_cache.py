"""The cache of verified access tokens: it saves the signature check, never a security check."""

from __future__ import annotations

import pytest

from graphql_api.auth.keys import KeySet
from graphql_api.auth.tokens import AccessTokenCodec, InvalidToken
from graphql_api.container import Container
from tests.conftest import FakeClock, GraphQLClient, error_codes


def codec(keys: KeySet, clock: FakeClock, cache_size: int = 100) -> AccessTokenCodec:
    return AccessTokenCodec(
        keys=keys,
        issuer="graphql-api",
        audience="graphql-api",
        ttl=900,
        leeway=5,
        clock=clock,
        cache_size=cache_size,
    )


def one_byte_changed(token: str, position: int) -> str:
    replacement = "A" if token[position] != "A" else "B"
    return token[:position] + replacement + token[position + 1 :]


def test_a_cached_token_is_refused_once_it_expires(keys: KeySet) -> None:
    clock = FakeClock()
    c = codec(keys, clock)
    token = c.issue(user_id=1, session_id="s").token
    assert c.decode(token).user_id == 1  # verified and remembered
    clock.advance(900 + 4)
    assert c.decode(token).user_id == 1  # still inside the leeway
    clock.advance(2)
    with pytest.raises(InvalidToken):
        c.decode(token)
    with pytest.raises(InvalidToken):
        c.decode(token)  # and it stays refused


def test_a_cached_token_is_refused_when_the_clock_is_before_its_issue_time(
    keys: KeySet,
) -> None:
    clock = FakeClock()
    c = codec(keys, clock)
    token = c.issue(user_id=1, session_id="s").token
    c.decode(token)
    clock.advance(-60)
    with pytest.raises(InvalidToken):
        c.decode(token)


@pytest.mark.parametrize("segment", [0, 1, 2])
def test_a_token_with_one_changed_byte_is_not_served_from_the_cache(
    keys: KeySet, segment: int
) -> None:
    c = codec(keys, FakeClock())
    token = c.issue(user_id=1, session_id="s").token
    c.decode(token)
    header, payload, _signature = token.split(".")
    # The middle of each segment: every bit of it is significant in base64url.
    start = [0, len(header) + 1, len(header) + len(payload) + 2][segment]
    length = [len(header), len(payload), len(_signature)][segment]
    forged = one_byte_changed(token, start + length // 2)
    with pytest.raises(InvalidToken):
        c.decode(forged)
    assert c.decode(token).user_id == 1


def test_the_cache_is_bounded_and_forgets_the_least_recently_used(keys: KeySet) -> None:
    c = codec(keys, FakeClock(), cache_size=2)
    first, second, third = (c.issue(user_id=n, session_id=f"s{n}").token for n in (1, 2, 3))
    for token in (first, second, first, third):
        c.decode(token)
    assert list(c._verified) == [first, third]
    assert c.decode(second).user_id == 2  # verified again from scratch


async def test_a_cached_token_of_a_revoked_session_is_refused(
    user: GraphQLClient, container: Container
) -> None:
    assert (await user.data("{ me { id } }"))["me"]["id"] == user.user_id  # now cached
    assert user.token is not None and user.token in container.codec._verified
    assert (await user.data("mutation { logout }"))["logout"] is True
    assert error_codes(await user.gql("{ me { id } }")) == ["UNAUTHENTICATED"]
