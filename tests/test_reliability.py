"""Dependencies that fail or stall cost a bounded wait and say why, and the service recovers
by itself: the rate limiter without Redis, the database's deadlines, /readyz, pruning.

(The whole service against faulty PostgreSQL, Redis and Google, process by process, is in
tests/faults/.)
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from graphql_api.container import Container
from graphql_api.db.engine import Database, Timeouts
from graphql_api.db.models import Revocation, Session, UsedGoogleToken, User
from graphql_api.errors import RateLimited, ServiceUnavailable
from graphql_api.rate_limit import FallbackRateLimiter, MemoryRateLimiter
from graphql_api.settings import RateLimit
from tests.conftest import AppClient, FakeClock, GraphQLClient, error_codes

THREE = RateLimit(3, 60)


class Stalling:
    """A rate limiter that never answers, or one that fails at once."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.calls = 0

    async def hit(self, key: str, rate: RateLimit) -> None:
        self.calls += 1
        if self.fail:
            raise ConnectionError("Redis is down")
        await asyncio.sleep(3600)


async def test_a_stalled_redis_costs_a_request_its_timeout_once_then_nothing(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    primary = Stalling()
    limiter = FallbackRateLimiter(
        primary, MemoryRateLimiter(clock=clock), timeout=0.2, retry_after=1.0, clock=clock
    )
    with caplog.at_level(logging.WARNING, logger="graphql_api.rate_limit"):
        started = time.monotonic()
        await asyncio.wait_for(limiter.hit("login:ip:a", THREE), timeout=2)
        assert time.monotonic() - started < 1.0
        started = time.monotonic()
        await limiter.hit("login:ip:a", THREE)  # within retry_after: Redis is not asked
        assert time.monotonic() - started < 0.05
    assert primary.calls == 1 and limiter.fallbacks == 2
    said = [r for r in caplog.records if getattr(r, "event", "") == "rate_limit_fallback"]
    assert len(said) == 1
    # Counted in-process meanwhile: the limit still holds.
    await limiter.hit("login:ip:a", THREE)
    with pytest.raises(RateLimited):
        await limiter.hit("login:ip:a", THREE)


async def test_redis_is_asked_again_after_a_while_and_its_answer_ends_the_outage(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    primary = Stalling(fail=True)
    limiter = FallbackRateLimiter(
        primary, MemoryRateLimiter(clock=clock), timeout=0.2, retry_after=1.0, clock=clock
    )
    await limiter.hit("k", THREE)
    primary.fail = False
    primary.hit = MemoryRateLimiter(clock=clock).hit  # type: ignore[method-assign]
    clock.advance(1.5)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="graphql_api.rate_limit"):
        await limiter.hit("k", THREE)
    assert [r.event for r in caplog.records] == ["rate_limit_recovered"]  # type: ignore[attr-defined]
    assert limiter.fallbacks == 1


async def test_sign_in_works_with_redis_down(app_client: AppClient, fake_google: Any) -> None:
    from redis.asyncio import Redis

    dead = Redis.from_url("redis://127.0.0.1:9/0", socket_timeout=0.2, socket_connect_timeout=0.2)
    from graphql_api.rate_limit import RedisRateLimiter

    limiter = FallbackRateLimiter(RedisRateLimiter(dead), MemoryRateLimiter(), timeout=0.2)
    client = await app_client(limiter=limiter)
    login = "mutation($t: String!) { googleLogin(idToken: $t) { accessToken refreshToken } }"
    for n in range(3):
        body = await client.gql(login, {"t": fake_google.mint(sub=f"no-redis-{n}")})
        assert "errors" not in body, body
    refresh = "mutation($t: String) { refreshToken(refreshToken: $t) { accessToken } }"
    assert "errors" not in await client.gql(
        refresh, {"t": body["data"]["googleLogin"]["refreshToken"]}
    )
    await dead.aclose()


async def test_the_refresh_rate_limit_is_never_asked_with_the_session_locked(
    app_client: AppClient, container: Container, fake_google: Any
) -> None:
    class Watching(MemoryRateLimiter):
        inside_a_write: list[str] = []

        async def hit(self, key: str, rate: RateLimit) -> None:
            # SQLite has one write connection: checked out means a write transaction is open.
            if container.db.write_engine.pool.checkedout():  # type: ignore[attr-defined]
                self.inside_a_write.append(key)
            await super().hit(key, rate)

    limiter = Watching()
    client = await app_client(limiter=limiter)
    login = "mutation($t: String!) { googleLogin(idToken: $t) { refreshToken } }"
    token = (await client.gql(login, {"t": fake_google.mint(sub="locks")}))["data"]
    refresh = "mutation($t: String) { refreshToken(refreshToken: $t) { refreshToken } }"
    assert "errors" not in await client.gql(refresh, {"t": token["googleLogin"]["refreshToken"]})
    assert limiter.inside_a_write == []


# --- the database ------------------------------------------------------------------


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a frozen server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(100)
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("kind", ["stalled", "closed"])
async def test_a_database_that_does_not_answer_is_service_unavailable_fast(
    kind: str, stalled_port: int, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    port = stalled_port if kind == "stalled" else closed_port
    db = Database(
        f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test",
        timeouts=Timeouts(connect=0.5, checkout=0.5, statement=0.5),
    )
    try:
        with caplog.at_level(logging.WARNING, logger="graphql_api.db"):
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(ServiceUnavailable):
                    # Bounded here too: without the database's own deadlines this hangs.
                    async with asyncio.timeout(5), db.reader() as session:
                        await session.execute(Revocation.__table__.select())
                assert time.monotonic() - started < 2.0
        # Said once for the outage, not once per request.
        said = [r for r in caplog.records if getattr(r, "event", "") == "database_unavailable"]
        assert len(said) == 1
    finally:
        await db.dispose()


async def test_a_request_the_database_cannot_serve_is_503_with_retry_after_and_request_id(
    app_client: AppClient, user: GraphQLClient, stalled_port: int
) -> None:
    client = await app_client(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{stalled_port}/test",
        db_connect_timeout=0.5,
        db_pool_timeout=0.5,
    )
    client.token = user.token
    started = time.monotonic()
    response = await client.post("{ me { id } }")
    assert time.monotonic() - started < 3.0
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "2"
    assert response.headers["x-request-id"]
    body = response.json()
    assert error_codes(body) == ["SERVICE_UNAVAILABLE"]
    assert body["errors"][0]["extensions"]["retryAfter"] == 2
    # A request that needs no database is still answered.
    client.token = None
    assert (await client.gql("{ __typename }"))["data"] == {"__typename": "Query"}


# --- /readyz -----------------------------------------------------------------------


async def test_readyz_says_ready_when_migrated_and_why_not_otherwise(
    app_client: AppClient, anonymous: GraphQLClient, stalled_port: int, tmp_path: Path
) -> None:
    ready = await anonymous.http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok"}

    empty = await app_client(database_url=f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    answer = await empty.http.get("/readyz")
    assert answer.status_code == 503
    assert "not migrated" in answer.json()["reasons"][0]

    frozen = await app_client(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{stalled_port}/test",
        db_connect_timeout=5,
    )
    started = time.monotonic()
    answer = await frozen.http.get("/readyz")
    assert time.monotonic() - started < 1.5
    assert answer.status_code == 503 and answer.json()["reasons"] == ["database: does not answer"]


async def test_readyz_turns_unready_when_the_process_starts_draining(
    anonymous: GraphQLClient, container: Container
) -> None:
    container.readiness.draining = True
    answer = await anonymous.http.get("/readyz")
    assert answer.status_code == 503 and answer.json()["reasons"] == ["shutting down"]


# --- pruning -----------------------------------------------------------------------


async def test_expired_rows_are_pruned_and_live_ones_kept(container: Container) -> None:
    now = container.clock.now()
    old, recent = now - timedelta(days=30), now - timedelta(seconds=10)
    async with container.db.writer() as session:
        user = User(
            google_sub="prune", email="p@example.com", name="P", created_at=now, updated_at=now
        )
        session.add(user)
        await session.flush()
        for sid, revoked, expires in (
            ("ended-long-ago", old, now + timedelta(days=1)),
            ("expired-long-ago", None, old),
            ("ended-now", recent, now + timedelta(days=1)),
            ("live", None, now + timedelta(days=1)),
        ):
            session.add(
                Session(
                    id=sid,
                    user_id=user.id,
                    created_at=old,
                    last_used_at=old,
                    expires_at=expires,
                    revoked_at=revoked,
                )
            )
        session.add_all(
            [
                Revocation(session_id="a", user_id=user.id, revoked_at=old, reason="logout"),
                Revocation(session_id="b", user_id=user.id, revoked_at=recent, reason="logout"),
                UsedGoogleToken(token_id="spent", expires_at=old),
                UsedGoogleToken(token_id="fresh", expires_at=now + timedelta(hours=1)),
            ]
        )
    assert await container.pruner.prune() == {
        "revocations": 1,
        "used_google_tokens": 1,
        "sessions": 2,
    }
    async with container.db.reader() as session:
        sessions = {s.id for s in (await session.execute(Session.__table__.select())).all()}
        revocations = {
            r.session_id for r in (await session.execute(Revocation.__table__.select())).all()
        }
    assert sessions == {"ended-now", "live"} and revocations == {"b"}
