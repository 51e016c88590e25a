"""Google's certificate endpoint slow, stalled or down: sign-in costs a bounded wait,
one fetch serves every login waiting for it, and an outage says SERVICE_UNAVAILABLE."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LOGIN, AppClient, FakeClock, GraphQLClient, error_codes
from tests.fake_google import FakeGoogle
from tests.trickling_endpoint import TricklingEndpoint

# Generous bounds: the machine is shared and noisy. Without a total deadline the same
# requests take many times longer, or never end.
DEADLINE = 1.0
MARGIN = 3.0


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    """A Google of this test's own, to slow down or take down."""
    fake = FakeGoogle().start()
    yield fake
    fake.stop()


@pytest.fixture
def trickling() -> Iterator[TricklingEndpoint]:
    endpoint = TricklingEndpoint().start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def production(app_client: AppClient, keys_file: Path) -> Any:
    def build(certs_url: str) -> Any:
        return app_client(
            env="production",
            jwt_keys_file=keys_file,
            trusted_documents="off",
            google_certs_url=certs_url,
            google_certs_timeout=DEADLINE,
        )

    return build


async def sign_in(client: GraphQLClient, id_token: str) -> dict[str, Any]:
    response = await client.post(LOGIN, {"idToken": id_token})
    body: dict[str, Any] = response.json()
    # A sign-in that failed whole for want of certificates is HTTP 503, with Retry-After.
    unavailable = error_codes(body) == ["SERVICE_UNAVAILABLE"]
    assert response.status_code == (503 if unavailable else 200), response.text
    assert unavailable == ("retry-after" in response.headers), response.headers
    return body


async def sign_in_concurrently(
    client: GraphQLClient, google: FakeGoogle, count: int
) -> list[dict[str, Any]]:
    tokens = [google.mint(sub=f"outage-{n}") for n in range(count)]
    # The ceiling only turns a hang into a failure; the bounds are asserted by each test.
    return await asyncio.wait_for(
        asyncio.gather(*(sign_in(client, token) for token in tokens)),
        timeout=60,
    )


def assert_unavailable(body: dict[str, Any]) -> None:
    assert error_codes(body) == ["SERVICE_UNAVAILABLE"], body
    retry_after = body["errors"][0]["extensions"]["retryAfter"]
    assert isinstance(retry_after, int) and retry_after >= 1, body


async def test_concurrent_sign_ins_share_one_fetch_of_a_trickling_endpoint_and_end_at_its_deadline(
    production: Any, trickling: TricklingEndpoint, fake_google: FakeGoogle
) -> None:
    client = await production(trickling.url)
    started = time.monotonic()
    bodies = await sign_in_concurrently(client, fake_google, 8)
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + MARGIN, elapsed
    assert trickling.requests == 1
    for body in bodies:
        assert_unavailable(body)


async def test_concurrent_sign_ins_share_one_fetch_of_a_slow_google(
    production: Any, google: FakeGoogle
) -> None:
    google.delay = DEADLINE / 2
    client = await production(google.jwks_url)
    started = time.monotonic()
    bodies = await sign_in_concurrently(client, google, 8)
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + MARGIN, elapsed
    assert google.requests == 1
    for body in bodies:
        assert "errors" not in body, body


async def test_google_down_with_no_certificates_yet_is_service_unavailable(
    production: Any, google: FakeGoogle
) -> None:
    google.fail = True
    client = await production(google.jwks_url)
    assert_unavailable(await sign_in(client, google.mint(sub="early")))
    # Every login until the retry is due is answered at once, without a new fetch.
    for body in await sign_in_concurrently(client, google, 5):
        assert_unavailable(body)
    assert google.requests == 1


async def test_google_down_with_certificates_in_hand_still_signs_in(
    production: Any, google: FakeGoogle, clock: FakeClock
) -> None:
    client = await production(google.jwks_url)
    assert "errors" not in await sign_in(client, google.mint(sub="before"))
    google.fail = True
    clock.advance(google.max_age + 1)
    for body in await sign_in_concurrently(client, google, 5):
        assert "errors" not in body, body
    assert google.requests == 2
