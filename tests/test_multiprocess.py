"""Scale beyond one process: two `graphql-api serve` processes on one PostgreSQL and Redis.

Sessions are shared through the database's revocation log (each process polls it every
0.5 s) and rate limits through Redis, so a client may land on either process. Also:
`serve` drains a request already in flight when it is told to stop.

Needs PostgreSQL (TEST_POSTGRES_DSN) and Redis (TEST_REDIS_URL, default
redis://127.0.0.1:6379/0): skipped locally when either is unreachable, failed under CI=true.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI, LOGIN, error_codes, migrated_pg_database
from tests.fake_google import CLIENT_ID, FakeGoogle
from tests.live_server import LiveServer

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ME = "{ me { id } }"


async def _redis_reachable() -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no Redis here"
        message = f"Redis unreachable at {REDIS_URL}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
async def shared_database() -> AsyncIterator[str]:
    await _redis_reachable()
    async with migrated_pg_database() as url:
        yield url


@pytest.fixture(scope="module")
def start(
    shared_database: str,
    keys_file: Path,
    fake_google: FakeGoogle,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    """``start()`` -> a new `graphql-api serve` process, ready, on the shared stores."""
    processes: list[LiveServer] = []
    logs = tmp_path_factory.mktemp("serve-logs")

    def _start() -> LiveServer:
        settings = {
            "ENV": "production",
            "DATABASE_URL": shared_database,
            "REDIS_URL": REDIS_URL,
            "JWT_KEYS_FILE": str(keys_file),
            "GOOGLE_CLIENT_IDS": CLIENT_ID,
            "GOOGLE_CERTS_URL": fake_google.jwks_url,
            "GOOGLE_CERTS_TIMEOUT": "15",  # a loaded machine, not a slow Google
            # Few logins per client IP per day, shared by every process through Redis.
            "LOGIN_RATE_LIMIT": "3/day",
            # Each test sends its own X-Forwarded-For, so runs never share a counter.
            "TRUSTED_PROXIES": "127.0.0.1",
            "DB_POOL_SIZE": "2",
            "TRUSTED_DOCUMENTS": "off",
        }
        process = LiveServer.start(settings=settings, log_dir=logs)
        processes.append(process)
        return process

    yield _start
    for process in processes:
        process.stop()


@pytest.fixture(scope="module")
def two_processes(start: Any) -> tuple[LiveServer, LiveServer]:
    return start(), start()


def fresh_client_ip() -> str:
    """A client address no earlier run used: rate-limit counters in Redis outlive a run."""
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | secrets.randbits(96)))


async def gql(
    http: httpx.AsyncClient,
    process: LiveServer,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    ip: str,
) -> dict[str, Any]:
    headers = {"x-forwarded-for": ip}
    if token:
        headers["authorization"] = f"Bearer {token}"
    response = await http.post(
        f"{process.url}/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(
    http: httpx.AsyncClient, process: LiveServer, google: FakeGoogle, *, ip: str
) -> dict[str, Any]:
    sub = f"mp-{secrets.token_hex(6)}"
    id_token = google.mint(sub=sub, email=f"{sub}@example.com")
    return await gql(http, process, LOGIN, {"idToken": id_token}, ip=ip)


async def test_a_logout_through_one_process_is_refused_by_the_other_within_a_second(
    two_processes: tuple[LiveServer, LiveServer], fake_google: FakeGoogle
) -> None:
    first, second = two_processes
    ip = fresh_client_ip()
    async with httpx.AsyncClient(timeout=10) as http:
        body = await login(http, first, fake_google, ip=ip)
        assert "errors" not in body, body
        token = body["data"]["googleLogin"]["accessToken"]
        assert "errors" not in await gql(http, second, ME, token=token, ip=ip)

        assert (await gql(http, first, "mutation { logout }", token=token, ip=ip))["data"] == {
            "logout": True
        }
        logged_out = time.monotonic()
        codes: list[str] = []
        while time.monotonic() - logged_out < 1.0:
            codes = error_codes(await gql(http, second, ME, token=token, ip=ip))
            if codes:
                break
            await asyncio.sleep(0.05)

    assert codes == ["UNAUTHENTICATED"]


async def test_the_login_rate_limit_counts_across_processes(
    two_processes: tuple[LiveServer, LiveServer], fake_google: FakeGoogle
) -> None:
    first, second = two_processes
    ip = fresh_client_ip()
    # A per-process counter would allow 3 logins on each; Redis allows 3 in all.
    async with httpx.AsyncClient(timeout=10) as http:
        answers = [
            await login(http, process, fake_google, ip=ip)
            for process in (first, second, first, second)
        ]

    assert [error_codes(body) for body in answers] == [[], [], [], ["RATE_LIMITED"]]


async def test_serve_drains_a_request_in_flight_when_told_to_stop(
    start: Any, fake_google: FakeGoogle
) -> None:
    process = start()
    host, port = process.url.removeprefix("http://").split(":")
    body = b'{"query": "{ __typename }"}'
    reader, writer = await asyncio.open_connection(host, int(port))
    # Headers and half the body: the request is in flight when the signal arrives.
    writer.write(
        b"POST /graphql HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:10]
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    process.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    assert process.process.poll() is None  # still draining

    writer.write(body[10:])
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()

    status_line, _, rest = response.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK", response
    assert rest.endswith(b'{"data":{"__typename":"Query"}}'), response
    # uvicorn re-raises the signal it caught once shutdown is complete.
    assert await asyncio.to_thread(process.process.wait, 10) in (0, -signal.SIGTERM)


async def test_a_logout_through_one_process_closes_a_socket_on_the_other_within_a_second(
    two_processes: tuple[LiveServer, LiveServer], fake_google: FakeGoogle
) -> None:
    """20 trials; the distribution is printed (pytest -s) for the record."""
    import json

    import websockets
    from websockets.typing import Subprotocol

    first, second = two_processes
    delays: list[float] = []
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(20):
            ip = fresh_client_ip()
            body = await login(http, first, fake_google, ip=ip)
            token = body["data"]["googleLogin"]["accessToken"]
            url = second.url.replace("http://", "ws://") + "/graphql"
            async with websockets.connect(
                url, subprotocols=[Subprotocol("graphql-transport-ws")]
            ) as ws:
                init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
                await ws.send(json.dumps(init))
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
                await gql(http, first, "mutation { logout }", token=token, ip=ip)
                logged_out = time.monotonic()
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
                delays.append(time.monotonic() - logged_out)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4403, "Session ended")
    delays.sort()
    print(
        "socket closed after a logout on the other process, 20 trials: "
        f"min {delays[0] * 1000:.0f} ms, median {delays[10] * 1000:.0f} ms, "
        f"p90 {delays[17] * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms"
    )
    assert delays[-1] < 1.0, delays


async def test_an_event_made_through_one_process_reaches_a_subscriber_on_the_other(
    two_processes: tuple[LiveServer, LiveServer], fake_google: FakeGoogle
) -> None:
    import json

    import websockets
    from websockets.typing import Subprotocol

    first, second = two_processes
    ip = fresh_client_ip()
    async with httpx.AsyncClient(timeout=10) as http:
        token = (await login(http, first, fake_google, ip=ip))["data"]["googleLogin"]["accessToken"]
        url = second.url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(
            url, subprotocols=[Subprotocol("graphql-transport-ws")]
        ) as ws:
            await ws.send(
                json.dumps(
                    {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
                )
            )
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
            query = "subscription { categoryEvents { kind category { name } } }"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
            await asyncio.sleep(0.3)
            created = await gql(
                http,
                first,
                'mutation { createCategory(input: {name: "Across"}) { id } }',
                token=token,
                ip=ip,
            )
            assert "errors" not in created, created
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert message["payload"]["data"]["categoryEvents"] == {
        "kind": "CREATED",
        "category": {"name": "Across"},
    }
