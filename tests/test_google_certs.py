"""Google's certificates: cached per max-age, refetched sparingly, kept when Google is down,
fetched once for every login waiting, within a total deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from graphql_api.auth.google import (
    MIN_REFETCH_INTERVAL,
    CertificateCache,
    CertsResponse,
    GoogleVerifier,
    HttpxCertsFetcher,
)
from graphql_api.errors import ServiceUnavailable
from tests.conftest import FakeClock
from tests.fake_google import CLIENT_ID, FakeGoogle
from tests.trickling_endpoint import TricklingEndpoint


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    fake = FakeGoogle().start()
    yield fake
    fake.stop()


def verifier(google: FakeGoogle, clock: FakeClock) -> GoogleVerifier:
    cache = CertificateCache(url=google.jwks_url, fetcher=HttpxCertsFetcher(), clock=clock)
    return GoogleVerifier(client_ids=[CLIENT_ID], hosted_domains=[], certs=cache, clock=clock)


async def test_certificates_are_fetched_once_while_fresh(google: FakeGoogle) -> None:
    clock = FakeClock()
    v = verifier(google, clock)
    for n in range(3):
        await v.verify(google.mint(sub=f"s{n}"), nonce=None)
    assert google.requests == 1
    clock.advance(google.max_age + 1)
    await v.verify(google.mint(sub="later"), nonce=None)
    assert google.requests == 2


async def test_unknown_kid_refetches_at_most_once_a_minute(google: FakeGoogle) -> None:
    clock = FakeClock()
    v = verifier(google, clock)
    await v.verify(google.mint(), nonce=None)
    for _ in range(5):
        with pytest.raises(Exception):  # noqa: B017,PT011 - the reason is logged, not typed
            await v.verify(google.mint(kid="nobody-has-this"), nonce=None)
    assert google.requests == 1  # within the minute after the first fetch: no refetch
    clock.advance(61)
    new_key = google.rotate()
    await v.verify(google.mint(signing_key=new_key), nonce=None)
    assert google.requests == 2


async def test_last_good_certificates_are_kept_when_google_is_unreachable(
    google: FakeGoogle,
) -> None:
    clock = FakeClock()
    v = verifier(google, clock)
    await v.verify(google.mint(sub="before"), nonce=None)
    google.fail = True
    clock.advance(google.max_age + 1)
    identity = await v.verify(google.mint(sub="during-outage"), nonce=None)
    assert identity.sub == "during-outage"
    assert google.requests == 2  # it tried, failed, and kept the last good set


async def test_fetching_does_not_block_the_event_loop(google: FakeGoogle) -> None:
    clock = FakeClock()
    v = verifier(google, clock)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await v.verify(google.mint(), nonce=None)
    task.cancel()
    assert ticks > 1


# Timing bounds are generous on purpose: the machine is shared and noisy. They tell a
# fetch bounded by its deadline from one that is not (seconds more, or never).
DEADLINE = 0.5
MARGIN = 2.5


class ScriptedFetcher:
    """A CertsFetcher whose every fetch runs ``behaviour``, counting them."""

    def __init__(self, behaviour: Callable[[], Awaitable[CertsResponse]]) -> None:
        self.behaviour = behaviour
        self.calls = 0

    async def fetch(self, url: str) -> CertsResponse:
        self.calls += 1
        return await self.behaviour()


def answers(google: FakeGoogle, *, after: float = 0.0) -> Callable[[], Awaitable[CertsResponse]]:
    body = json.dumps({"keys": [key.public_jwk for key in google.published]}).encode()

    async def behaviour() -> CertsResponse:
        await asyncio.sleep(after)
        return CertsResponse(200, {"cache-control": f"max-age={google.max_age}"}, body)

    return behaviour


async def hangs() -> CertsResponse:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def is_down() -> CertsResponse:
    raise OSError("connection refused")


def cache_with(fetcher: ScriptedFetcher, clock: FakeClock | None = None) -> CertificateCache:
    return CertificateCache(
        url="https://certs.invalid/", fetcher=fetcher, clock=clock or FakeClock(), deadline=DEADLINE
    )


async def all_of(*calls: Awaitable[bytes]) -> list[bytes | BaseException]:
    # A ceiling far above any bound asserted: a hang fails the test instead of stalling it.
    return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=30)


async def test_concurrent_logins_with_an_empty_cache_share_one_fetch(google: FakeGoogle) -> None:
    fetcher = ScriptedFetcher(answers(google, after=0.3))
    cache = CertificateCache(
        url="https://certs.invalid/", fetcher=fetcher, clock=FakeClock(), deadline=5
    )
    started = time.monotonic()
    results = await all_of(*(cache.certificates(None) for _ in range(20)))
    assert time.monotonic() - started < 0.3 + MARGIN
    assert fetcher.calls == 1
    assert all(isinstance(result, bytes) for result in results), results


async def test_a_fetch_that_never_answers_ends_at_the_deadline_for_every_waiter() -> None:
    fetcher = ScriptedFetcher(hangs)
    cache = cache_with(fetcher)
    started = time.monotonic()
    results = await all_of(*(cache.certificates(None) for _ in range(10)))
    assert time.monotonic() - started < DEADLINE + MARGIN
    assert fetcher.calls == 1
    assert all(isinstance(result, ServiceUnavailable) for result in results), results


async def test_a_trickling_endpoint_is_given_up_at_the_deadline() -> None:
    # Every read answers within httpx's per-read timeout; only a total deadline ends it.
    endpoint = TricklingEndpoint().start()
    try:
        cache = CertificateCache(
            url=endpoint.url, fetcher=HttpxCertsFetcher(), clock=FakeClock(), deadline=DEADLINE
        )
        started = time.monotonic()
        [result] = await all_of(cache.certificates(None))
        assert time.monotonic() - started < DEADLINE + MARGIN
        assert isinstance(result, ServiceUnavailable)
        assert endpoint.requests == 1
    finally:
        endpoint.stop()


async def test_after_a_failed_fetch_logins_are_refused_at_once_until_the_next_attempt(
    google: FakeGoogle,
) -> None:
    clock = FakeClock()
    fetcher = ScriptedFetcher(hangs)
    cache = cache_with(fetcher, clock)
    [first] = await all_of(cache.certificates(None))
    assert isinstance(first, ServiceUnavailable)
    assert first.retry_after >= 1
    # Google still hangs, but nobody waits on it again before the retry is due.
    started = time.monotonic()
    results = await all_of(*(cache.certificates(None) for _ in range(10)))
    assert time.monotonic() - started < DEADLINE
    assert all(isinstance(result, ServiceUnavailable) for result in results), results
    assert fetcher.calls == 1
    clock.advance(first.retry_after)
    fetcher.behaviour = answers(google)
    assert isinstance(await cache.certificates(None), bytes)
    assert fetcher.calls == 2


async def test_repeated_failures_back_off_up_to_the_refetch_interval() -> None:
    clock = FakeClock()
    cache = cache_with(ScriptedFetcher(is_down), clock)
    waits = []
    # Past a thousand failures too (a day of outage), where an exponent would overflow.
    for _ in range(1100):
        with pytest.raises(ServiceUnavailable) as refused:
            await cache.certificates(None)
        waits.append(refused.value.retry_after)
        clock.advance(refused.value.retry_after)
    assert waits == sorted(waits) and waits[0] >= 1, waits
    assert waits[-1] == MIN_REFETCH_INTERVAL, waits


async def test_a_stale_set_whose_refresh_hangs_is_still_used(google: FakeGoogle) -> None:
    clock = FakeClock()
    fetcher = ScriptedFetcher(answers(google))
    cache = cache_with(fetcher, clock)
    v = GoogleVerifier(client_ids=[CLIENT_ID], hosted_domains=[], certs=cache, clock=clock)
    await v.verify(google.mint(sub="warm"), nonce=None)
    fetcher.behaviour = hangs
    clock.advance(google.max_age + 1)
    started = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(v.verify(google.mint(sub=f"s{n}"), nonce=None) for n in range(10))),
        timeout=30,
    )
    assert time.monotonic() - started < DEADLINE + MARGIN
    assert [identity.sub for identity in results] == [f"s{n}" for n in range(10)]
    assert fetcher.calls == 2
    # The failed refresh is not retried for every login that follows.
    started = time.monotonic()
    await v.verify(google.mint(sub="after"), nonce=None)
    assert time.monotonic() - started < DEADLINE
    assert fetcher.calls == 2
