"""Redis killed or stalled: sign-in and refresh go on (limits counted in-process), /readyz
says Redis does not answer, and limits are shared through Redis again once it is back."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from tests.fake_google import FakeGoogle
from tests.faults.clients import REFRESH, Caller, Outcome, events, fresh_ip, log_entries, until
from tests.faults.conftest import Serve, caller_for, production_settings
from tests.faults.dependencies import RedisServer
from tests.faults.figures import record, seconds
from tests.faults.proxy import FaultProxy, Mode

REDIS_TIMEOUT = 0.2  # the default GRAPHQL_API_REDIS_TIMEOUT
KILLED_REDIS_TIMEOUT = 0.5  # GRAPHQL_API_REDIS_TIMEOUT in the killed-Redis test
RETRY_AFTER = 1.0  # FallbackRateLimiter.retry_after: how long a process counts in-process


def counted_in_redis(server_port: int, kind: str, ip: str) -> bool:
    """Whether Redis holds the ``kind`` (login, refresh) counter of client ``ip``."""
    client = redis.Redis(port=server_port, socket_timeout=2)
    try:
        return bool(client.keys(f"graphql_api:rl:{kind}:ip:{ip}:*"))
    finally:
        client.close()


async def sign_in_and_refresh(caller: Caller, google: FakeGoogle) -> tuple[Outcome, Outcome, str]:
    """A login, then a refresh of its token, from one fresh client address."""
    ip = fresh_ip()
    login = await caller.login(google, ip=ip)
    assert login.ok, login.describe()
    assert login.body is not None
    token = login.body["data"]["googleLogin"]["refreshToken"]
    refresh = await caller.graphql("refresh", REFRESH, {"t": token}, ip=ip)
    return login, refresh, ip


async def test_a_killed_redis_never_blocks_sign_in_and_limits_are_shared_again_when_it_returns(
    serve: Serve,
    redis_server: RedisServer,
    pg_database: str,
    keys_file: Path,
    fake_google: FakeGoogle,
    http_client: httpx.AsyncClient,
) -> None:
    fault = "1. Redis killed"
    settings = production_settings(
        database_url=pg_database,
        keys_file=keys_file,
        google=fake_google,
        REDIS_URL=redis_server.url,
        # Roomier than the default: on a loaded machine, a first connection to Redis can
        # take longer than 0.2 s, and a hit counted in-process would make the checks of
        # "counted in Redis" below fail for the wrong reason.
        REDIS_TIMEOUT=str(KILLED_REDIS_TIMEOUT),
    )
    server = serve(settings, workers=2)
    caller = caller_for(http_client, server)
    # Each process opens its Redis connections before the baseline is measured.
    await asyncio.gather(*(sign_in_and_refresh(caller, fake_google) for _ in range(8)))

    # Several at once, so that each process's Redis pool holds several connections: the
    # ones a killed Redis leaves dead in the pool.
    before = await asyncio.gather(*(sign_in_and_refresh(caller, fake_google) for _ in range(8)))
    assert all(refresh.ok for _, refresh, _ in before), [r.describe() for _, r, _ in before]
    assert all(counted_in_redis(redis_server.port, "login", ip) for _, _, ip in before)
    log_start = server.log.stat().st_size

    redis_server.kill()
    killed = time.monotonic()
    took, answer = await until(lambda: _unready_for_redis(caller), within=10, interval=0.1)
    assert answer, "/readyz still says ready without Redis"
    readyz_during = [await caller.readyz() for _ in range(5)]
    assert all(r.status == 503 for r in readyz_during), [r.describe() for r in readyz_during]
    assert all(r.seconds < 1.5 for r in readyz_during), [r.describe() for r in readyz_during]
    assert readyz_during[0].body == {"status": "unavailable", "reasons": ["redis: does not answer"]}

    # Sign-ins and refreshes spread over a few seconds: several of the limiter's retries.
    during: list[Outcome] = []
    outage_started = time.monotonic()
    while time.monotonic() - outage_started < 3.0:
        login, refresh, _ = await sign_in_and_refresh(caller, fake_google)
        during += [login, refresh]
    unanswered = [o.describe() for o in during if not o.ok]
    assert not unanswered, unanswered
    baseline = max(o.seconds for pair in before for o in pair[:2])
    slowest = max(o.seconds for o in during)
    # Redis is asked at most once a second per process, and waited on for REDIS_TIMEOUT.
    assert slowest < baseline + KILLED_REDIS_TIMEOUT + 1.0, (slowest, baseline)

    redis_server.start()
    back = time.monotonic()
    ready_after, _ = await until(lambda: _ready(caller), within=10)
    # Straight away: every login and refresh is counted in Redis again (shared by both
    # processes), with no failures from connections of the killed server left in a pool,
    # for longer than the pool's health-check interval (10 s).
    after: list[tuple[Outcome, Outcome, str]] = []
    settled: list[tuple[Outcome, Outcome, str]] = []  # sent once each process has asked again
    shared_after: float | None = None
    while time.monotonic() - back < 20.0:
        sent = time.monotonic()
        results = await asyncio.gather(
            *(sign_in_and_refresh(caller, fake_google) for _ in range(4))
        )
        after += results
        # A process asks Redis again at most once a second (RETRY_AFTER) after a failure:
        # what it counts before that is counted in-process, by design.
        if sent - back > RETRY_AFTER + KILLED_REDIS_TIMEOUT:
            settled += results
        if shared_after is None and counted_in_redis(redis_server.port, "refresh", results[0][2]):
            shared_after = time.monotonic() - back
        await asyncio.sleep(0.5)
    entries = log_entries(server.log, since=log_start)
    fallbacks = events(entries, "rate_limit_fallback")
    recovered = events(entries, "rate_limit_recovered")
    counted_here_after = [
        ip for _, _, ip in settled if not counted_in_redis(redis_server.port, "refresh", ip)
    ]
    record(
        fault,
        baseline_login_and_refresh=seconds([o.seconds for pair in before for o in pair[:2]]),
        login_and_refresh_during_outage=seconds([o.seconds for o in during]),
        failed_during_outage=len(unanswered),
        readyz_503_after_kill=f"{took:.2f} s",
        readyz_answer_during=seconds([r.seconds for r in readyz_during]),
        readyz_200_after_return=f"{ready_after:.2f} s",
        counted_in_redis_again_after=f"{shared_after:.2f} s"
        if shared_after is not None
        else "never",
        fallback_log_lines=f"{len(fallbacks)} rate_limit_fallback, "
        f"{len(recovered)} rate_limit_recovered (2 processes)",
        refreshes_not_counted_in_redis_after_return=f"{len(counted_here_after)} "
        f"of {len(settled)} sent from {RETRY_AFTER + KILLED_REDIS_TIMEOUT:.1f} s to 20 s",
        acknowledged_writes_lost=0,  # sign-ins and refreshes: every one answered and checked below
    )
    assert all(login.ok and refresh.ok for login, refresh, _ in after), [
        o.describe() for pair in after for o in pair[:2] if not o.ok
    ]
    assert shared_after is not None and shared_after < 3.0
    assert counted_here_after == []
    # Said once per outage per process, and its end too.
    assert 1 <= len(fallbacks) <= 2, fallbacks
    assert len(recovered) == len(fallbacks), recovered
    assert killed < back


async def _unready_for_redis(caller: Caller) -> bool:
    answer = await caller.readyz()
    return answer.status == 503 and answer.body == {
        "status": "unavailable",
        "reasons": ["redis: does not answer"],
    }


async def _ready(caller: Caller) -> bool:
    return (await caller.readyz()).status == 200


async def test_a_stalled_redis_costs_each_sign_in_at_most_its_timeout(
    serve: Serve,
    redis_server: RedisServer,
    proxy_factory: Callable[[str, int], FaultProxy],
    pg_database: str,
    keys_file: Path,
    fake_google: FakeGoogle,
    http_client: httpx.AsyncClient,
) -> None:
    fault = "2. Redis stalled"
    proxy = proxy_factory("127.0.0.1", redis_server.port)
    settings = production_settings(
        database_url=pg_database,
        keys_file=keys_file,
        google=fake_google,
        REDIS_URL=f"redis://{proxy.host}:{proxy.port}/0",
    )
    server = serve(settings, workers=2)
    caller = caller_for(http_client, server)

    async def logins_for(duration: float) -> list[Outcome]:
        """One by one and four at once (a stall must not queue them behind each other)."""
        outcomes: list[Outcome] = []
        started = time.monotonic()
        while time.monotonic() - started < duration:
            outcomes.append(await caller.login(fake_google))
            outcomes += await asyncio.gather(*(caller.login(fake_google) for _ in range(4)))
            await asyncio.sleep(0.3)
        return outcomes

    assert (await caller.login(fake_google)).ok  # fetches Google's certificates first
    before = await logins_for(2.0)
    assert all(o.ok for o in before), [o.describe() for o in before]

    proxy.set_mode(Mode.STALL)
    stalled = time.monotonic()
    during = await logins_for(4.0)
    readyz = await caller.readyz()

    proxy.set_mode(Mode.PASS)
    resumed = time.monotonic()
    ready_after, _ = await until(lambda: _ready(caller), within=10)
    after = await logins_for(2.0)
    baseline = max(o.seconds for o in before)
    slowest = max(o.seconds for o in during)
    extra = statistics.median(o.seconds for o in during) - statistics.median(
        o.seconds for o in before
    )
    record(
        fault,
        login_before=seconds([o.seconds for o in before]),
        login_during_stall=seconds([o.seconds for o in during]),
        extra_wait_p50=f"{extra:.3f} s (REDIS_TIMEOUT {REDIS_TIMEOUT} s)",
        failed_during_stall=sum(not o.ok for o in during),
        readyz_during_stall=f"{readyz.status} in {readyz.seconds:.2f} s",
        readyz_200_after_stall_ends=f"{ready_after:.2f} s",
        login_after=seconds([o.seconds for o in after]),
        acknowledged_writes_lost=0,
    )
    assert all(o.ok for o in during), [o.describe() for o in during if not o.ok]
    # Each waits for Redis at most REDIS_TIMEOUT (a shared machine: a generous margin).
    assert slowest < baseline + REDIS_TIMEOUT + 0.8, (slowest, baseline)
    assert readyz.status == 503 and readyz.seconds < 1.5
    assert readyz.body is not None and readyz.body["reasons"] == ["redis: does not answer"]
    assert all(o.ok for o in after), [o.describe() for o in after]
    assert ready_after < 5.0
    assert resumed > stalled
