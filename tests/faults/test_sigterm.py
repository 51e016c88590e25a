"""SIGTERM under load (`serve --workers 2`): /readyz stops saying ready at once, every
request the service accepted completes (no 5xx, no answer cut off), the process exits
cleanly within the drain, and no acknowledged write is lost."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.fake_google import FakeGoogle
from tests.faults.clients import Caller, Load, Outcome, acknowledged
from tests.faults.conftest import Serve, caller_for, production_settings
from tests.faults.figures import record, seconds
from tests.faults.test_postgres import stored_category_names

DRAIN = 20.0  # serve's timeout_graceful_shutdown


def turned_away(outcome: Outcome) -> bool:
    """No answer, and no sign the service took the request: refused, or closed unread
    (an idle keep-alive connection at shutdown, a connection still in the listen queue)."""
    error = outcome.transport_error or ""
    return outcome.status is None and (
        error.startswith(("ConnectError", "ConnectTimeout", "ReadError"))
        or "without sending a response" in error
    )


async def probe_readiness(url: str, probes: list[tuple[float, str]], stop: asyncio.Event) -> None:
    """/readyz every 50 ms on a new connection with a 1 s timeout, as a load balancer does:
    (when sent, the status or the transport error's class)."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=1.0, limits=limits) as probe:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                answer = str((await probe.get(f"{url}/readyz")).status_code)
            except httpx.TransportError as exc:
                answer = exc.__class__.__name__
            probes.append((sent, answer))
            await asyncio.sleep(0.05)


def _exit_of(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    """The exit status of ``process`` and when it exited (time.monotonic())."""
    code = process.wait(DRAIN + 10)
    return code, time.monotonic()


async def test_sigterm_under_load_drains_what_was_accepted_and_exits_cleanly(
    serve: Serve,
    pg_database: str,
    keys_file: Path,
    fake_google: FakeGoogle,
    http_client: httpx.AsyncClient,
) -> None:
    fault = "7. SIGTERM under load"
    settings = production_settings(
        database_url=pg_database, keys_file=keys_file, google=fake_google, DB_POOL_SIZE="8"
    )
    server = serve(settings, workers=2)
    caller: Caller = caller_for(http_client, server)
    token = (await caller.signed_in(fake_google))["accessToken"]
    probes: list[tuple[float, str]] = []
    stop_probing = asyncio.Event()
    prober = asyncio.create_task(probe_readiness(server.url, probes, stop_probing))

    async with Load(caller, token, concurrency=16) as load:
        await asyncio.sleep(2.0)
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        exit_watch = asyncio.ensure_future(asyncio.to_thread(_exit_of, server.process))
        # Clients keep sending for a while, as they do until a load balancer notices.
        await asyncio.sleep(2.0)
    exit_code, exited_at = await exit_watch
    exited_in = exited_at - signalled
    stop_probing.set()
    await prober
    stored = await stored_category_names(pg_database)

    # In flight when the signal came, and taken by the service (not turned away unread).
    in_flight = [o for o in load.outcomes if o.started < signalled < o.ended and not turned_away(o)]
    answered = [o for o in load.outcomes if o.status is not None]
    away = [o for o in load.outcomes if turned_away(o)]
    cut = [o.describe() for o in load.outcomes if o.status is None and not turned_away(o)]
    failed = [o.describe() for o in answered if not o.ok]
    executed_unanswered = [o.name for o in away if o.name in stored]
    lost = [name for name in acknowledged(load.outcomes).values() if name not in stored]
    ready_after = [t - signalled for t, answer in probes if t > signalled and answer == "200"]
    first_unready = min(
        (t - signalled for t, answer in probes if t > signalled and answer != "200"), default=None
    )
    record(
        fault,
        requests=f"{len(load.outcomes)} ({len(answered)} answered, {len(away)} turned away unread)",
        in_flight_at_sigterm=f"{len(in_flight)}, ok {sum(o.ok for o in in_flight)}, longest "
        f"{max((o.ended - signalled for o in in_flight), default=0):.2f} s after the signal",
        answer_time=seconds([o.seconds for o in answered]),
        turned_away_answer_time=seconds([o.seconds for o in away]),
        answered_with_an_error=len(failed),
        cut_off_mid_answer=len(cut),
        readyz_last_200_after_sigterm=f"{max(ready_after):.2f} s" if ready_after else "none",
        readyz_first_not_ready_after_sigterm=f"{first_unready:.2f} s"
        if first_unready is not None
        else "never",
        readyz_answers_after_sigterm=sorted({answer for t, answer in probes if t > signalled}),
        exited=f"code {exit_code} after {exited_in:.2f} s",
        acknowledged_writes=len(acknowledged(load.outcomes)),
        acknowledged_writes_lost=len(lost),
        executed_but_turned_away=len(executed_unanswered),
    )
    assert in_flight and all(o.ok for o in in_flight), [o.describe() for o in in_flight]
    assert failed == [] and cut == []
    assert executed_unanswered == []
    assert lost == []
    # The supervisor passes the signal on within half a second; then never "ready" again:
    # 503 in the moment before the workers close their listeners, then no answer at all.
    assert ready_after == [] or max(ready_after) < 1.0, ready_after
    assert first_unready is not None and first_unready < 1.0
    assert exit_code in (0, -signal.SIGTERM) and exited_in < DRAIN
