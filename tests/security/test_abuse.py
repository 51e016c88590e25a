"""Abuse: login and refresh rate limits, aliases that try to multiply attempts, the
shared Redis limiter, and which client IP the limits count."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from graphql_api.errors import RateLimited
from graphql_api.rate_limit import MemoryRateLimiter, RedisRateLimiter
from graphql_api.settings import RateLimit
from graphql_api.web.client_ip import client_ip, parse_proxies
from tests.conftest import LOGIN, AppClient, FakeClock, GraphQLClient, error_codes
from tests.fake_google import FakeGoogle

if TYPE_CHECKING:
    from redis.asyncio import Redis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"
# A day, so that no test straddles a window boundary.
THREE_A_DAY = "3/day"
BAD_LOGIN = 'mutation { googleLogin(idToken: "not-a-google-token") { accessToken } }'


async def login_codes(client: GraphQLClient, times: int, **headers: str) -> list[str]:
    codes = []
    for _ in range(times):
        response = await client.http.post("/graphql", json={"query": BAD_LOGIN}, headers=headers)
        codes.extend(error_codes(response.json()))
    return codes


async def test_login_attempts_past_the_limit_are_rate_limited_with_retry_after(
    app_client: AppClient,
) -> None:
    client = await app_client(login_rate_limit=THREE_A_DAY)
    assert await login_codes(client, 3) == ["UNAUTHENTICATED"] * 3
    response = await client.http.post("/graphql", json={"query": BAD_LOGIN})
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    retry_after = error["extensions"]["retryAfter"]
    assert isinstance(retry_after, int) and 0 < retry_after <= 86400
    assert response.headers["retry-after"] == str(retry_after)


async def test_refresh_attempts_past_the_limit_are_rate_limited(app_client: AppClient) -> None:
    query = 'mutation { refreshToken(refreshToken: "rt_guess") { accessToken } }'
    client = await app_client(refresh_rate_limit=THREE_A_DAY)
    codes = [error_codes(await client.gql(query))[0] for _ in range(5)]
    assert codes == ["UNAUTHENTICATED"] * 3 + ["RATE_LIMITED"] * 2


async def test_refreshes_of_one_user_are_limited_across_client_ips(
    app_client: AppClient, fake_google: FakeGoogle
) -> None:
    refresh = "mutation($t: String!) { refreshToken(refreshToken: $t) { refreshToken } }"
    limits = {"refresh_rate_limit": THREE_A_DAY, "trusted_proxies": ["127.0.0.1/32"]}
    client = await app_client(**limits)
    login = await client.gql(LOGIN, {"idToken": fake_google.mint(sub="hammer")})
    token = login["data"]["googleLogin"]["refreshToken"]
    for i in range(3):
        headers = {"x-forwarded-for": f"198.51.100.{i}"}
        body = await client.gql(refresh, {"t": token}, headers=headers)
        token = body["data"]["refreshToken"]["refreshToken"]
    body = await client.gql(refresh, {"t": token}, headers={"x-forwarded-for": "203.0.113.9"})
    assert error_codes(body) == ["RATE_LIMITED"]
    # The refused attempt rotated nothing: the same token still works once the limit allows.
    other_process = await app_client()
    body = await other_process.gql(refresh, {"t": token})
    assert "errors" not in body, body


async def test_logins_of_one_google_account_are_limited_across_client_ips(
    app_client: AppClient, fake_google: FakeGoogle
) -> None:
    # Valid tokens of one account from a new address each time: only the per-account
    # counter sees them all.
    limits = {"login_rate_limit": THREE_A_DAY, "trusted_proxies": ["127.0.0.1/32"]}
    client = await app_client(**limits)
    for i in range(3):
        token = fake_google.mint(sub="one-account", email="one@example.com")
        headers = {"x-forwarded-for": f"198.51.100.{i}"}
        body = await client.gql(LOGIN, {"idToken": token}, headers=headers)
        assert "errors" not in body, body
    token = fake_google.mint(sub="one-account", email="one@example.com")
    body = await client.gql(LOGIN, {"idToken": token}, headers={"x-forwarded-for": "203.0.113.9"})
    assert error_codes(body) == ["RATE_LIMITED"], body
    # Another account from that same new address is not held back.
    other = fake_google.mint(sub="another-account", email="another@example.com")
    body = await client.gql(LOGIN, {"idToken": other}, headers={"x-forwarded-for": "203.0.113.9"})
    assert "errors" not in body, body


async def test_aliases_cannot_multiply_login_attempts(app_client: AppClient) -> None:
    aliased = (
        "mutation { "
        + " ".join(f'a{i}: googleLogin(idToken: "guess-{i}") {{ accessToken }}' for i in range(10))
        + " }"
    )
    client = await app_client(login_rate_limit=THREE_A_DAY)
    codes = [code for _ in range(5) for code in error_codes(await client.gql(aliased))]
    # Every alias is an attempt: 50 guesses requested, 3 verified, the rest refused.
    assert codes.count("UNAUTHENTICATED") == 3, codes
    assert set(codes) == {"UNAUTHENTICATED", "RATE_LIMITED"}
    assert await login_codes(client, 1) == ["RATE_LIMITED"]


async def test_x_forwarded_for_is_ignored_by_default(app_client: AppClient) -> None:
    client = await app_client(login_rate_limit=THREE_A_DAY)
    codes = [
        code
        for i in range(5)
        for code in await login_codes(client, 1, **{"x-forwarded-for": f"198.51.100.{i}"})
    ]
    assert codes == ["UNAUTHENTICATED"] * 3 + ["RATE_LIMITED"] * 2


async def test_x_forwarded_for_is_honoured_from_a_configured_proxy(app_client: AppClient) -> None:
    # The in-process transport connects from 127.0.0.1: declared here as the proxy.
    client = await app_client(login_rate_limit=THREE_A_DAY, trusted_proxies=["127.0.0.1/32"])
    codes = [
        code
        for i in range(5)
        for code in await login_codes(client, 1, **{"x-forwarded-for": f"198.51.100.{i}"})
    ]
    assert codes == ["UNAUTHENTICATED"] * 5
    same = await login_codes(client, 4, **{"x-forwarded-for": "198.51.100.200"})
    assert same == ["UNAUTHENTICATED"] * 3 + ["RATE_LIMITED"]


def test_client_ip_trusts_forwarded_for_only_from_proxies() -> None:
    proxies = parse_proxies(["10.0.0.0/8"])
    assert client_ip("203.0.113.9", ["1.2.3.4"], ()) == "203.0.113.9"
    assert client_ip("203.0.113.9", ["1.2.3.4"], proxies) == "203.0.113.9"
    assert client_ip("10.0.0.2", ["1.2.3.4"], proxies) == "1.2.3.4"
    # The client prepends its own lie; the proxy appends the real address.
    assert client_ip("10.0.0.2", ["6.6.6.6, 1.2.3.4"], proxies) == "1.2.3.4"
    assert client_ip("10.0.0.2", ["not-an-ip"], proxies) == "10.0.0.2"


async def test_a_flood_of_other_keys_does_not_reset_a_limited_key() -> None:
    # An attacker at the limit must not buy new attempts by making the counter table
    # overflow with made-up keys (addresses, accounts): only finished windows are dropped.
    limiter = MemoryRateLimiter(max_keys=100, clock=FakeClock())
    rate = RateLimit.parse(THREE_A_DAY)
    for _ in range(3):
        await limiter.hit("login:ip:203.0.113.9", rate)
    for n in range(1000):
        await limiter.hit(f"login:sub:made-up-{n}", rate)
    with pytest.raises(RateLimited):
        await limiter.hit("login:ip:203.0.113.9", rate)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    from redis.asyncio import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (RedisConnectionError, OSError) as exc:
        await client.aclose()
        if IN_CI:
            pytest.fail(f"Redis unreachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {exc}")
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis: Redis) -> AsyncIterator[str]:
    prefix = f"graphql_api_test:{secrets.token_hex(4)}:"
    yield prefix
    async for key in redis.scan_iter(match=f"{prefix}*"):
        await redis.delete(key)


async def test_redis_limiter_counts_across_processes(redis: Redis, redis_prefix: str) -> None:
    first, second = RedisRateLimiter(redis, redis_prefix), RedisRateLimiter(redis, redis_prefix)
    rate = RateLimit.parse(THREE_A_DAY)
    await first.hit("login:ip:1", rate)
    await second.hit("login:ip:1", rate)
    await first.hit("login:ip:1", rate)
    with pytest.raises(RateLimited) as raised:
        await second.hit("login:ip:1", rate)
    assert 0 < raised.value.retry_after <= 86400
    await second.hit("login:ip:2", rate)  # other keys are counted apart


async def test_app_rate_limits_through_redis(
    app_client: AppClient, redis: Redis, redis_prefix: str
) -> None:
    limiter = RedisRateLimiter(redis, redis_prefix)
    one = await app_client(login_rate_limit=THREE_A_DAY, limiter=limiter)
    assert await login_codes(one, 2) == ["UNAUTHENTICATED"] * 2
    two = await app_client(login_rate_limit=THREE_A_DAY, limiter=limiter)
    assert await login_codes(two, 2) == ["UNAUTHENTICATED", "RATE_LIMITED"]
    assert [key async for key in redis.scan_iter(match=f"{redis_prefix}*")]
