"""Google's certificates: cached per max-age, refetched sparingly, kept when Google is down."""

from __future__ import annotations

import asyncio

import pytest

from graphql_api.auth.google import CertificateCache, GoogleVerifier, HttpxCertsFetcher
from tests.conftest import FakeClock
from tests.fake_google import CLIENT_ID, FakeGoogle


@pytest.fixture
def google() -> FakeGoogle:
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
