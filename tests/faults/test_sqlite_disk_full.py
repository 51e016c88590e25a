"""SQLite on a full disk (a tmpfs of a few megabytes, filled by the test): writes answer
SERVICE_UNAVAILABLE, reads go on, and writes succeed again once space is freed."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fake_google import FakeGoogle
from tests.faults.clients import Caller, Outcome, acknowledged, events, log_entries, until
from tests.faults.conftest import Serve, caller_for, production_settings
from tests.faults.dependencies import Tmpfs
from tests.faults.figures import record, seconds


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Tmpfs]:
    disk = Tmpfs(tmp_path / "disk", "4m").mount()
    yield disk
    disk.close()


def stored_names(database: Path) -> set[str]:
    with sqlite3.connect(database) as connection:
        return {name for (name,) in connection.execute("SELECT name FROM categories")}


async def test_a_full_disk_refuses_writes_with_retry_later_keeps_reads_and_recovers(
    small_disk: Tmpfs,  # first: unmounted after the server has stopped
    serve: Serve,
    keys_file: Path,
    fake_google: FakeGoogle,
    http_client: httpx.AsyncClient,
) -> None:
    fault = "6. SQLite disk full"
    database = small_disk.path / "full.db"
    settings = production_settings(
        database_url=f"sqlite+aiosqlite:///{database}", keys_file=keys_file, google=fake_google
    )
    server = serve(settings)
    caller = caller_for(http_client, server)
    token = (await caller.signed_in(fake_google))["accessToken"]
    outcomes: list[Outcome] = [await caller.write(token) for _ in range(5)]
    assert all(o.ok for o in outcomes), [o.describe() for o in outcomes]
    log_start = server.log.stat().st_size

    filler = small_disk.fill()
    # Writes may still fit in pages SQLite's log file already holds; then the disk is full.
    still_fitted = 0
    while (outcome := await caller.write(token)).ok and still_fitted < 500:
        outcomes.append(outcome)
        still_fitted += 1
    outcomes.append(outcome)
    refused = [await caller.write(token) for _ in range(10)]
    outcomes += refused
    login = await caller.login(fake_google)
    reads = [await caller.read(token) for _ in range(10)]
    readyz = await caller.readyz()

    filler.unlink()
    freed = time.monotonic()
    recovered_in, _ = await until(lambda: _write_succeeds(caller, token, outcomes), within=10)
    after = [await caller.write(token) for _ in range(10)]
    outcomes += after
    entries = log_entries(server.log, since=log_start)
    stored = stored_names(database)
    lost = [name for name in acknowledged(outcomes).values() if name not in stored]
    record(
        fault,
        writes_that_still_fitted_after_filling=still_fitted,
        refused_write_answer=seconds([o.seconds for o in refused]),
        refused_write_codes=sorted({(o.status, *o.codes) for o in refused}),
        login_while_full=f"{login.status} {login.codes} in {login.seconds:.3f} s",
        reads_while_full=seconds([o.seconds for o in reads])
        + f", all ok: {all(o.ok for o in reads)}",
        readyz_while_full=f"{readyz.status} in {readyz.seconds:.3f} s",
        writes_succeed_again_after_freeing=f"{recovered_in:.2f} s",
        log_while_full=f"{len(events(entries, 'database_unavailable'))} database_unavailable, "
        f"{sum('exception' in e for e in entries)} tracebacks",
        acknowledged_writes=len(acknowledged(outcomes)),
        acknowledged_writes_lost=len(lost),
    )
    assert still_fitted < 500, "the disk never filled up"
    assert all(o.status == 503 and o.unavailable for o in refused), [o.describe() for o in refused]
    assert max(o.seconds for o in refused) < 2.0
    assert login.unavailable, login.describe()
    assert all(o.ok for o in reads), [o.describe() for o in reads]
    assert recovered_in < 5.0 and freed > 0
    assert all(o.ok for o in after), [o.describe() for o in after]
    assert lost == []
    assert not [e for e in entries if "exception" in e]


async def _write_succeeds(caller: Caller, token: str, outcomes: list[Outcome]) -> bool:
    outcome = await caller.write(token)
    outcomes.append(outcome)
    return outcome.ok
