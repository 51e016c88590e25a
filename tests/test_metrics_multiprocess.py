"""GET /metrics adds up every worker of `graphql-api serve --workers 2` (prometheus-client's
multiprocess mode), whichever worker answers the scrape; serve sets up the directory the
workers share and removes it when it stops."""

from __future__ import annotations

import glob
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from graphql_api.observability.metrics import FLUSH_INTERVAL
from tests.fake_google import CLIENT_ID, FakeGoogle
from tests.live_server import LiveServer
from tests.test_metrics import parse, value

PRIVATE_DIRS = os.path.join(tempfile.gettempdir(), "graphql-api-metrics-*")


@pytest.fixture
def two_workers(
    database_url: str, keys_file: Path, fake_google: FakeGoogle, tmp_path: Path
) -> Iterator[Callable[[], LiveServer]]:
    """``two_workers()`` -> a started `graphql-api serve --workers 2` with METRICS=true."""
    servers: list[LiveServer] = []

    def _start() -> LiveServer:
        settings = {
            "ENV": "production",
            "DATABASE_URL": database_url,
            "JWT_KEYS_FILE": str(keys_file),
            "GOOGLE_CLIENT_IDS": CLIENT_ID,
            "GOOGLE_CERTS_URL": fake_google.jwks_url,
            "GOOGLE_CERTS_TIMEOUT": "15",  # a loaded machine, not a slow Google
            "TRUSTED_DOCUMENTS": "off",
            "METRICS": "true",
        }
        server = LiveServer.start(settings=settings, log_dir=tmp_path, arguments=("--workers", "2"))
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


def test_the_counts_of_both_workers_add_up_in_every_scrape(
    two_workers: Callable[[], LiveServer],
) -> None:
    existing = set(glob.glob(PRIVATE_DIRS))
    server = two_workers()
    made = set(glob.glob(PRIVATE_DIRS)) - existing
    assert len(made) == 1  # a fresh private directory for this start

    workers: set[str] = set()
    sent = 0
    with httpx.Client(base_url=server.url, timeout=10) as http:
        # A new connection per request, so that either worker may accept it (the second
        # may still be starting); the request id's prefix is drawn per process, so it
        # tells which worker answered.
        deadline = time.monotonic() + 30
        while sent < 20 or (len(workers) < 2 and time.monotonic() < deadline):
            response = http.post(
                "/graphql", json={"query": "{ __typename }"}, headers={"connection": "close"}
            )
            assert response.status_code == 200
            workers.add(response.headers["x-request-id"].split("-")[0])
            sent += 1
            time.sleep(0.02)
        assert len(workers) == 2, "every request went to one worker"
        # Each worker writes its counts once a second: the answering one, at once.
        time.sleep(FLUSH_INTERVAL + 0.5)
        for _ in range(6):  # a scrape is answered by either worker
            response = http.get("/metrics", headers={"connection": "close"})
            assert response.status_code == 200
            samples = parse(response.text)
            assert (
                value(
                    samples,
                    "graphql_api_requests_total",
                    operation_type="query",
                    operation_name="free-form",
                    outcome="ok",
                )
                == sent
            )
            assert (
                value(samples, "graphql_api_request_duration_seconds_count", operation_type="query")
                == sent
            )
            assert value(samples, "graphql_api_websocket_connections") == 0

    server.stop()
    assert not made & set(glob.glob(PRIVATE_DIRS))  # removed at exit


def test_an_operators_directory_is_emptied_at_start_and_kept(
    two_workers: Callable[[], LiveServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"a previous run")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    server = two_workers()
    assert not (directory / "counter_999999.db").exists()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        http.post("/graphql", json={"query": "{ __typename }"}, headers={"connection": "close"})
        time.sleep(FLUSH_INTERVAL + 0.5)  # whichever worker answered, it has written it
        samples = parse(http.get("/metrics", headers={"connection": "close"}).text)
    assert (
        value(
            samples,
            "graphql_api_requests_total",
            operation_type="query",
            operation_name="free-form",
            outcome="ok",
        )
        == 1
    )
    assert list(directory.glob("counter_*.db"))  # the workers write here
    server.stop()
    assert directory.is_dir()
    # Workers that exit cleanly take their live gauges out of the sums.
    assert not list(directory.glob("gauge_live*.db"))
