"""Slow clients and overload against a real ``graphql-api serve`` (production settings):
every connection and request slot is held for a bounded time, and only so many at once.

Raw sockets play the clients; the time bounds are generous, the machine may be busy.
"""

from __future__ import annotations

import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fake_google import CLIENT_ID
from tests.live_server import COMMAND, ROOT, LiveServer, environment

HEADER_TIMEOUT = 2
BODY_TIMEOUT = 2
MAX_CONNECTIONS = 20
QUERY = b'{"query": "{ __typename }"}'


def start(tmp_path: Path, keys_file: Path, **limits: str) -> LiveServer:
    settings = {
        "ENV": "production",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/slow.db",
        "JWT_KEYS_FILE": str(keys_file),
        "GOOGLE_CLIENT_IDS": CLIENT_ID,
        "TRUSTED_DOCUMENTS": "off",
        **limits,
    }
    subprocess.run([*COMMAND, "migrate"], env=environment(settings), cwd=ROOT, check=True)  # noqa: S603
    return LiveServer.start(settings=settings, log_dir=tmp_path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, keys_file: Path) -> Iterator[LiveServer]:
    live = start(
        tmp_path_factory.mktemp("slow"),
        keys_file,
        HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        BODY_TIMEOUT=str(BODY_TIMEOUT),
        MAX_CONNECTIONS=str(MAX_CONNECTIONS),
    )
    yield live
    live.stop()


def connect(server: LiveServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:  # closed with our bytes unread
        return True


def post_headers(length: int) -> bytes:
    return (
        b"POST /graphql HTTP/1.1\r\nHost: api.example.com\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(length).encode() + b"\r\n\r\n"
    )


def wait_until_answering(server: LiveServer, timeout: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.post(
                f"{server.url}/graphql",
                content=QUERY,
                headers={"content-type": "application/json"},
                timeout=5,
            )
        except httpx.TransportError:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)


def test_a_connection_that_stops_mid_headers_is_closed_after_the_header_timeout(
    server: LiveServer,
) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /graphql HTTP/1.1\r\nHost: api.example.com\r\nContent-")
        received, waited = read_until_closed(sock, timeout=30)
    assert received == b""  # closed, without an answer
    assert HEADER_TIMEOUT - 0.5 <= waited < HEADER_TIMEOUT + 10


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    server: LiveServer,
) -> None:
    with connect(server) as sock:
        received, waited = read_until_closed(sock, timeout=30)
    assert received == b"" and HEADER_TIMEOUT - 0.5 <= waited < HEADER_TIMEOUT + 10


def test_a_body_that_stops_arriving_is_answered_408_after_the_body_timeout(
    server: LiveServer,
) -> None:
    with connect(server) as sock:
        sock.sendall(post_headers(len(QUERY)) + QUERY[:10])
        received, waited = read_until_closed(sock, timeout=30)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in received.lower()
    assert BODY_TIMEOUT - 0.5 <= waited < BODY_TIMEOUT + 10


def test_connections_beyond_the_cap_are_closed_and_the_server_keeps_answering(
    server: LiveServer,
) -> None:
    assert wait_until_answering(server).status_code == 200
    half_open = [connect(server) for _ in range(50)]
    try:
        for sock in half_open:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a")
        # Well before the header timeout, the connections over the cap are already gone.
        time.sleep(1)
        readable, _, _ = select.select(half_open, [], [], 0)
        closed = [sock for sock in readable if closed_by_server(sock)]
        assert len(closed) >= 50 - MAX_CONNECTIONS, server.output()
        # And once the header timeout has freed the slots, a normal request is answered.
        response = wait_until_answering(server)
        assert response.status_code == 200
        assert response.json() == {"data": {"__typename": "Query"}}
    finally:
        for sock in half_open:
            sock.close()


def test_requests_beyond_the_in_flight_limit_get_503_and_retry_after(
    tmp_path: Path, keys_file: Path
) -> None:
    live = start(tmp_path, keys_file, MAX_IN_FLIGHT="2", BODY_TIMEOUT="5")
    try:
        # Two requests in flight, each waiting for the rest of its body.
        slow = [connect(live) for _ in range(2)]
        for sock in slow:
            sock.sendall(post_headers(len(QUERY)) + QUERY[:10])
        time.sleep(1)
        busy = httpx.post(
            f"{live.url}/graphql", content=QUERY, headers={"content-type": "application/json"}
        )
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        error = busy.json()["errors"][0]
        assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE", "retryAfter": 1}
        assert httpx.get(f"{live.url}/healthz").status_code == 200  # liveness still answers
        for sock in slow:
            assert read_until_closed(sock, timeout=30)[0].startswith(b"HTTP/1.1 408 ")
            sock.close()
        assert wait_until_answering(live).status_code == 200
    finally:
        live.stop()
