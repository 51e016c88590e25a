"""Google's certificate endpoint slow, trickling or down while the service has no
certificates yet: concurrent sign-ins share one fetch, end within GOOGLE_CERTS_TIMEOUT and
answer SERVICE_UNAVAILABLE (never UNAUTHENTICATED), and sign-in works again once Google
is back, after the refetch backoff (1 s, doubling per failed fetch, at most a minute)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fake_google import FakeGoogle
from tests.faults.clients import Outcome, events, log_entries
from tests.faults.conftest import Serve, caller_for, production_settings
from tests.faults.figures import record, seconds
from tests.faults.proxy import FaultProxy, Mode

CERTS_TIMEOUT = 1.0  # GOOGLE_CERTS_TIMEOUT in tests/faults/conftest.py
LOGINS = 10


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    """An issuer of this test's own: its delay is changed here, never the shared one's."""
    issuer = FakeGoogle().start()
    yield issuer
    issuer.stop()


def retry_after(outcome: Outcome) -> float:
    assert outcome.body is not None
    return float(outcome.body["errors"][0]["extensions"]["retryAfter"])


async def test_sign_in_without_certificates_is_service_unavailable_within_the_deadline(
    serve: Serve,
    proxy_factory: Callable[[str, int], FaultProxy],
    google: FakeGoogle,
    keys_file: Path,
    tmp_path: Path,
    http_client: httpx.AsyncClient,
) -> None:
    fault = "5. Google certificates"
    port = int(google.base_url.rsplit(":", 1)[1])
    proxy = proxy_factory("127.0.0.1", port)
    proxy.trickle_bytes, proxy.trickle_interval = 4, 0.1
    settings = production_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/google.db",
        keys_file=keys_file,
        google=google,
        GOOGLE_CERTS_URL=f"http://{proxy.host}:{proxy.port}/oauth2/v3/certs",
    )
    server = serve(settings)  # one process: one certificate cache to count fetches of
    caller = caller_for(http_client, server)
    log_start = server.log.stat().st_size
    next_attempt = time.monotonic()

    async def round_of_logins(name: str, *, fetches: Callable[[], int]) -> list[Outcome]:
        nonlocal next_attempt
        await asyncio.sleep(max(0.0, next_attempt - time.monotonic()) + 0.2)  # the backoff
        fetched = fetches()
        outcomes = await asyncio.gather(*(caller.login(google) for _ in range(LOGINS)))
        shared = fetches() - fetched
        record(
            fault,
            **{
                f"{name}_answer": seconds([o.seconds for o in outcomes]),
                f"{name}_codes": sorted({(o.status, *o.codes) for o in outcomes}),
                f"{name}_fetches_for_{LOGINS}_logins": shared,
                f"{name}_retry_after": sorted({o.headers.get("retry-after", "") for o in outcomes}),
            },
        )
        assert all(o.status == 503 and o.unavailable for o in outcomes), [
            o.describe() for o in outcomes
        ]
        # One fetch, shared, within its deadline (plus a noisy machine's margin).
        assert max(o.seconds for o in outcomes) < CERTS_TIMEOUT + 1.5
        if name != "down":  # a refused connection is never accepted, so not counted
            assert shared == 1, shared
        next_attempt = time.monotonic() + max(retry_after(o) for o in outcomes)
        return outcomes

    google.delay = 3 * CERTS_TIMEOUT
    await round_of_logins("slow", fetches=lambda: proxy.accepted)
    google.delay = 0
    proxy.set_mode(Mode.TRICKLE)
    await round_of_logins("trickling", fetches=lambda: proxy.accepted)
    proxy.set_mode(Mode.DROP)
    await round_of_logins("down", fetches=lambda: proxy.accepted)
    # Between fetches, no login waits at all: the answer is at once, with when to retry.
    between = await caller.login(google)
    assert between.unavailable and between.seconds < 0.5, between.describe()

    proxy.set_mode(Mode.PASS)
    back = time.monotonic()
    attempts: list[Outcome] = []
    while time.monotonic() - back < 70:  # the backoff is at most a minute
        attempt = await caller.login(google)
        attempts.append(attempt)
        if attempt.ok:
            break
        assert attempt.unavailable, attempt.describe()
        await asyncio.sleep(retry_after(attempt))  # as a client told to retry would
    recovered_in = time.monotonic() - back
    fetched = proxy.accepted
    after = await asyncio.gather(*(caller.login(google) for _ in range(LOGINS)))
    entries = log_entries(server.log, since=log_start)
    record(
        fault,
        answer_between_fetches=f"{between.seconds:.3f} s, "
        f"Retry-After {between.headers.get('retry-after')}",
        signed_in_again_after_google_returns=f"{recovered_in:.2f} s "
        f"({len(attempts)} attempts, honouring retryAfter)",
        logins_after=seconds([o.seconds for o in after]),
        fetches_after=proxy.accepted - fetched,
        google_certs_fetch_failed_log_lines=len(events(entries, "google_certs_fetch_failed")),
        acknowledged_writes_lost=0,
    )
    assert attempts[-1].ok
    # Three failed fetches: the next one is due 4 s after the last (1, 2, 4 s).
    assert recovered_in < 4.0 + 2.0
    assert all(o.ok for o in after), [o.describe() for o in after]
    assert proxy.accepted - fetched == 0  # the certificates are cached now
    assert len(events(entries, "google_certs_fetch_failed")) == 3
