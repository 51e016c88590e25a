"""PostgreSQL stalled or restarted, behind a proxy on a throwaway database: requests that need
it answer SERVICE_UNAVAILABLE within the configured deadlines, /readyz within a second, the
log says it once, and the service recovers by itself without losing an acknowledged write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from tests.fake_google import FakeGoogle
from tests.faults.clients import (
    Caller,
    Load,
    Outcome,
    acknowledged,
    events,
    log_entries,
    until,
)
from tests.faults.conftest import Serve, caller_for, pg_address, production_settings, through
from tests.faults.figures import record, seconds
from tests.faults.proxy import FaultProxy, Mode
from tests.live_server import LiveServer

# DB_CONNECT_TIMEOUT, DB_POOL_TIMEOUT and DB_STATEMENT_TIMEOUT are 1 s (conftest): a request
# may meet two of them (its session check, then its own statement) before it gives up.
ANSWER_BOUND = 5.0


async def stored_category_names(database_url: str) -> set[str]:
    """Every category name in the database, read directly (not through the proxy)."""
    url = make_url(database_url).set(drivername="postgresql")
    connection = await asyncpg.connect(url.render_as_string(hide_password=False), timeout=10)
    try:
        return {row["name"] for row in await connection.fetch("SELECT name FROM categories")}
    finally:
        await connection.close()


def lost_writes(outcomes: list[Outcome], stored: set[str]) -> list[str]:
    return [name for name in acknowledged(outcomes).values() if name not in stored]


def committed_unacknowledged(outcomes: list[Outcome], stored: set[str]) -> int:
    """Writes that answered an error (or nothing) yet committed: allowed, and worth knowing."""
    return sum(1 for o in outcomes if o.name in stored and not o.ok)


def unclean(outcomes: list[Outcome]) -> list[str]:
    """Answers that are neither a success nor 'retry later': a 500, no answer at all, ..."""
    return [o.describe() for o in outcomes if not (o.ok or o.unavailable)]


async def first_success(caller: Caller, token: str) -> float:
    """Seconds until a read and a write both succeed again."""

    async def both() -> bool:
        return (await caller.read(token)).ok and (await caller.write(token)).ok

    took, done = await until(both, within=20, interval=0.05)
    assert done, "the service did not recover"
    return took


async def signed_in_server(
    serve: Serve,
    proxy: FaultProxy,
    pg_database: str,
    keys_file: Path,
    google: FakeGoogle,
    http: httpx.AsyncClient,
) -> tuple[LiveServer, Caller, str]:
    settings = production_settings(
        database_url=through(pg_database, proxy), keys_file=keys_file, google=google
    )
    server = serve(settings, workers=2)
    caller = caller_for(http, server)
    token: str = (await caller.signed_in(google))["accessToken"]
    return server, caller, token


async def test_a_stalled_postgresql_is_service_unavailable_within_the_deadlines_said_once(
    serve: Serve,
    proxy_factory: Callable[[str, int], FaultProxy],
    pg_database: str,
    keys_file: Path,
    fake_google: FakeGoogle,
    http_client: httpx.AsyncClient,
) -> None:
    fault = "3. PostgreSQL stalled"
    proxy = proxy_factory(*pg_address())
    server, caller, token = await signed_in_server(
        serve, proxy, pg_database, keys_file, fake_google, http_client
    )
    log_start = server.log.stat().st_size
    readyz: list[Outcome] = []
    no_database: list[Outcome] = []
    async with Load(caller, token, concurrency=16) as load:
        await asyncio.sleep(1.0)
        proxy.set_mode(Mode.STALL)
        stalled = time.monotonic()
        while time.monotonic() - stalled < 5.0:
            readyz.append(await caller.readyz())
            no_database.append(await caller.graphql("anonymous", "{ __typename }"))
            await asyncio.sleep(0.4)
        proxy.set_mode(Mode.PASS)
        resumed = time.monotonic()
        recovered_in = await first_success(caller, token)
        await asyncio.sleep(1.0)
    ready_after, _ = await until(lambda: _ready(caller), within=10)
    entries = log_entries(server.log, since=log_start)
    stored = await stored_category_names(pg_database)

    # Started once the stall had begun, answered before it ended: what clients got.
    during = [o for o in load.outcomes if o.started >= stalled and o.ended <= resumed]
    # Those in flight when the stall began, or still waiting when it ended, too.
    overlapping = [o for o in load.outcomes if o.started < resumed and o.ended > stalled]
    after = [o for o in load.outcomes if o.started >= resumed + recovered_in]
    warnings = [e for e in entries if e["level"] in ("WARNING", "ERROR", "CRITICAL")]
    tracebacks = [e for e in entries if "exception" in e]
    log_bytes = sum(len(str(e)) for e in warnings)
    record(
        fault,
        answer_during_stall=seconds([o.seconds for o in during]),
        answers_during_stall=_tally(during),
        answer_of_every_request_overlapping_the_stall=seconds([o.seconds for o in overlapping]),
        readyz_during_stall=seconds([r.seconds for r in readyz])
        + f", statuses {sorted({str(r.status) for r in readyz})}",
        no_database_query_during_stall=seconds([o.seconds for o in no_database]),
        recovered_after_stall_ends=f"{recovered_in:.2f} s",
        readyz_200_after=f"{ready_after:.2f} s",
        log_during_outage=f"{len(warnings)} warning lines ({log_bytes} bytes) "
        f"for {len(during)} failed requests; "
        f"{len(events(entries, 'database_unavailable'))} database_unavailable, "
        f"{len(events(entries, 'database_recovered'))} database_recovered, "
        f"{len(tracebacks)} tracebacks",
        acknowledged_writes=len(acknowledged(load.outcomes)),
        acknowledged_writes_lost=len(lost_writes(load.outcomes, stored)),
        committed_but_not_acknowledged=committed_unacknowledged(load.outcomes, stored),
    )
    assert during, "no request was answered during the stall"
    assert unclean(during) == []
    assert all(not o.ok for o in during if o.name is not None)  # no write can succeed
    assert max(o.seconds for o in overlapping) < ANSWER_BOUND
    assert all(r.status == 503 and r.seconds < 1.5 for r in readyz), [r.describe() for r in readyz]
    assert readyz[-1].body == {"status": "unavailable", "reasons": ["database: does not answer"]}
    assert all(o.ok and o.seconds < 1.0 for o in no_database), [o.describe() for o in no_database]
    assert recovered_in < 5.0
    assert after and all(o.ok for o in after), unclean(after)
    assert ready_after < 5.0
    assert lost_writes(load.outcomes, stored) == []
    # Said once per outage per process, and its end; never a traceback per request.
    assert 1 <= len(events(entries, "database_unavailable")) <= 2
    assert tracebacks == []
    assert len(warnings) <= 10, warnings


async def test_a_restarted_postgresql_fails_requests_in_flight_cleanly_and_serves_once_back(
    serve: Serve,
    proxy_factory: Callable[[str, int], FaultProxy],
    pg_database: str,
    keys_file: Path,
    fake_google: FakeGoogle,
    http_client: httpx.AsyncClient,
) -> None:
    fault = "4. PostgreSQL restarted"
    proxy = proxy_factory(*pg_address())
    server, caller, token = await signed_in_server(
        serve, proxy, pg_database, keys_file, fake_google, http_client
    )
    log_start = server.log.stat().st_size
    async with Load(caller, token, concurrency=8) as load:
        await asyncio.sleep(1.5)
        in_flight_at_drop = proxy.open_connections
        proxy.set_mode(Mode.DROP)
        dropped = time.monotonic()
        readyz_down, _ = await until(lambda: _unready(caller), within=5)
        await asyncio.sleep(2.0)
        proxy.set_mode(Mode.PASS)
        back = time.monotonic()
        recovered_in = await first_success(caller, token)
        await asyncio.sleep(1.5)
    entries = log_entries(server.log, since=log_start)
    stored = await stored_category_names(pg_database)

    cut = [o for o in load.outcomes if o.started < dropped < o.ended]
    during = [o for o in load.outcomes if o.started >= dropped and o.ended <= back]
    after = [o for o in load.outcomes if o.started >= back + recovered_in]
    record(
        fault,
        database_connections_cut=in_flight_at_drop,
        requests_in_flight_at_drop=f"{len(cut)}: {_tally(cut)}",
        answer_while_down=seconds([o.seconds for o in during]),
        answers_while_down=_tally(during),
        readyz_503_after_drop=f"{readyz_down:.2f} s",
        recovered_after_it_is_back=f"{recovered_in:.2f} s",
        answers_after_recovery=_tally(after),
        acknowledged_writes=len(acknowledged(load.outcomes)),
        acknowledged_writes_lost=len(lost_writes(load.outcomes, stored)),
        committed_but_not_acknowledged=committed_unacknowledged(load.outcomes, stored),
        tracebacks_in_log=sum("exception" in e for e in entries),
    )
    assert unclean(load.outcomes) == []
    assert during and max(o.seconds for o in during) < ANSWER_BOUND
    assert readyz_down < 2.0
    assert recovered_in < 5.0
    assert after and all(o.ok for o in after), unclean(after)
    assert lost_writes(load.outcomes, stored) == []
    assert not [e for e in entries if "exception" in e]


def _tally(outcomes: list[Outcome]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        key = (
            "ok"
            if outcome.ok
            else f"{outcome.status} {','.join(outcome.codes) or outcome.transport_error}"
        )
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{key}: {count}" for key, count in sorted(counts.items())) or "none"


async def _ready(caller: Caller) -> bool:
    return (await caller.readyz()).status == 200


async def _unready(caller: Caller) -> Any:
    answer = await caller.readyz()
    return answer.status == 503
